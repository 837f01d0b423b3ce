"""The media rows other processes change, heard through LISTEN on a connection of its own.

A trigger (see piccolo_migrations) NOTIFYs `media_updated` when a row is inserted or its
status changes, at commit. Notifications arriving while the previous batch is handled are
merged per row, so a burst costs one batch, and what waits is bounded by the rows that
changed, not by how often they changed. While the connection is down nothing is heard:
after reconnecting, `resync` is called so the listener's owner can read what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "media_updated"
# How the listener's connection shows in pg_stat_activity.
APPLICATION_NAME = "mediagate-listener"
# A connection that answers nothing (no FIN, no RST) is found out within about this time.
HEALTH_CHECK_INTERVAL = 15.0
RECONNECT_DELAY = 1.0


@dataclass(frozen=True, slots=True)
class MediaChange:
    media_id: uuid.UUID
    session_id: uuid.UUID


Deliver = Callable[[list[MediaChange]], Awaitable[None]]
Resync = Callable[[], Awaitable[None]]


def parse_notification(payload: str) -> MediaChange | None:
    try:
        fields = json.loads(payload)
        return MediaChange(uuid.UUID(fields["id"]), uuid.UUID(fields["session_id"]))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed %s notification: %.200r", CHANNEL, payload)
        return None


class MediaChangeListener:
    def __init__(self, dsn: str, deliver: Deliver, resync: Resync) -> None:
        self._dsn = dsn
        self._deliver = deliver
        self._resync = resync
        self._pending: dict[uuid.UUID, uuid.UUID] = {}
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Listen before returning, so no change committed after start-up is missed."""
        connection = await self._listen()
        self._tasks = [
            asyncio.create_task(self._stay_connected(connection), name="media-changes-listen"),
            asyncio.create_task(self._pump(), name="media-changes-deliver"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(
            self._dsn, server_settings={"application_name": APPLICATION_NAME}
        )
        await connection.add_listener(CHANNEL, self._on_notification)
        return connection

    def _on_notification(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        change = parse_notification(payload)
        if change is not None:
            self._pending[change.media_id] = change.session_id
            self._arrived.set()

    async def _stay_connected(self, connection: asyncpg.Connection) -> None:
        while True:
            try:
                await self._watch(connection)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("lost the %s listener connection: %r", CHANNEL, error)
            finally:
                connection.terminate()
            connection = await self._reconnect()
            await self._resync()

    async def _watch(self, connection: asyncpg.Connection) -> None:
        """Returns never; raises when the connection is closed or stops answering."""
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _connection: closed.set())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), HEALTH_CHECK_INTERVAL)
                raise ConnectionError("the server closed the connection")
            async with asyncio.timeout(HEALTH_CHECK_INTERVAL):
                await connection.fetchval("SELECT 1")

    async def _reconnect(self) -> asyncpg.Connection:
        while True:
            await asyncio.sleep(RECONNECT_DELAY)
            try:
                return await self._listen()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("cannot listen for %s yet: %r", CHANNEL, error)

    async def _pump(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            batch = [MediaChange(media, session) for media, session in self._pending.items()]
            self._pending.clear()
            try:
                await self._deliver(batch)
            except Exception:  # a failed batch must not stop later ones
                log.exception("delivering %d media changes failed", len(batch))
