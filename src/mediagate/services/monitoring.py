"""What operators watch: the numbers behind /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from mediagate.db import stats, webhook_rows
from mediagate.observability.metrics import REFUSALS, Snapshot

LATENCY_WINDOW = timedelta(hours=1)


class Broker(Protocol):
    async def queue_depths(self) -> dict[str, int]: ...

    @property
    def is_connected(self) -> bool: ...


async def readiness(broker: Broker) -> dict[str, str]:
    """What /readyz reports: can this process reach the database and the broker?"""
    return {
        "database": "ok" if await stats.ping() else "down",
        "broker": "ok" if broker.is_connected else "down",
    }


class Feed(Protocol):
    @property
    def subscriber_count(self) -> int: ...

    @property
    def dropped_count(self) -> int: ...


async def snapshot(broker: Broker, feed: Feed, stuck_after: timedelta) -> Snapshot:
    """`stuck_after`: how long after its URL was issued an upload must have left the
    in-flight statuses (the URL's lifetime plus the reconciler's bound)."""
    counts = await stats.status_counts()
    backlog_seconds, disabled_endpoints = await webhook_rows.backlog()
    return Snapshot(
        media_by_status={status.value: count for status, count in counts.items()},
        viruses_found=await stats.viruses_found(),
        processing_seconds=await stats.processing_seconds(LATENCY_WINDOW),
        queue_messages=await broker.queue_depths(),
        stuck=await stats.count_stuck_since_created(datetime.now(UTC) - stuck_after),
        subscriptions=feed.subscriber_count,
        slow_subscribers_dropped=feed.dropped_count,
        webhook_backlog_seconds=backlog_seconds,
        webhook_endpoints_disabled=disabled_endpoints,
        refusals=REFUSALS.snapshot(),
    )


@dataclass
class _Taken:
    snapshot: Snapshot
    at: float


class CachedSnapshots:
    """The database's figures cost a scan of the table: taken at most once per `max_age`
    seconds however many scrape, and by one query at a time (scrapers that come while it
    runs wait for it). The process's own figures (subscriptions) are always current."""

    def __init__(
        self,
        take: Callable[[], Awaitable[Snapshot]],
        feed: Feed,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._take = take
        self._feed = feed
        self._max_age = max_age
        self._clock = clock
        self._last: _Taken | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Snapshot:
        async with self._lock:
            if self._last is None or self._clock() - self._last.at >= self._max_age:
                self._last = _Taken(await self._take(), self._clock())
        return replace(
            self._last.snapshot,
            subscriptions=self._feed.subscriber_count,
            slow_subscribers_dropped=self._feed.dropped_count,
            refusals=REFUSALS.snapshot(),
        )
