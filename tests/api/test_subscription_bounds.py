"""What a subscriber costs the API, bounded: its first state is one page and waits in its
bounded queue; one that stops reading is dropped even while nothing changes; one that
goes away mid-send is an ordinary disconnect, not an error in our log."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from mediagate.config import Settings
from mediagate.db import media_rows as repo
from mediagate.db import session_rows
from mediagate.domain import keys
from mediagate.domain.validation import DEFAULT_PAGE
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons
from tests.support.api import Tenant
from tests.support.graphql_ws import GraphQLSocket, graphql_socket
from tests.support.metrics import api_metric
from tests.support.rows import unbounded
from tests.support.worker_process import wait_until

STALL_TIMEOUT = 2
OPERATIONS = 20


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api") / "api.log"


@pytest.fixture(scope="module")
def served(
    env: dict[str, str], database: None, store: ObjectStore, server_log: Path
) -> Iterator[daemons.ServedApi]:
    overrides = {
        "WS_MAX_OPERATIONS": str(OPERATIONS),
        "WS_STALL_TIMEOUT": str(STALL_TIMEOUT),
        "GRAPHQL_MAX_ALIASES": "40",
        "LOG_LEVEL": "INFO",
    }
    with daemons.serve_api({**env, **overrides}, "--workers", "1", log=server_log) as api:
        yield api


async def _items(settings: Settings, tenant: Tenant, count: int) -> list[str]:
    """Items with long names (each message is large), in creation order: their keys."""
    await session_rows.ensure_user(tenant.principal.user_id, tenant.principal.organization_id)
    added = []
    for n in range(count):
        key = keys.upload_key(tenant.session_id, "general", ".jpg")
        await repo.insert_pending(
            organization_id=tenant.principal.organization_id,
            session_id=tenant.session_id,
            file_key=key,
            original_filename=f"{'n' * 200}-{n}.jpg",
            content_type="image/jpeg",
            stage="general",
            uploaded_by=tenant.principal.user_id,
            upload_expires_at=datetime.now(UTC) + timedelta(minutes=5),
            bounds=unbounded(settings.uploads.max_session_items),
        )
        added.append(key)
    return added


WIDE = " ".join(f"a{n}: originalFilename" for n in range(40))
HEAVY = f"subscription($sessionId: UUID!) {{ mediaUpdated(sessionId: $sessionId) {{ {WIDE} }} }}"


def _small_socket(served: daemons.ServedApi) -> socket.socket:
    """A client socket whose receive buffer holds almost nothing."""
    small = socket.socket()
    small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    small.connect(("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
    return small


async def _subscriptions_are(served: daemons.ServedApi, count: int) -> bool:
    return await api_metric(served.url, "mediagate_subscriptions") == count


async def _heavy_subscriptions(socket_: GraphQLSocket, tenant: Tenant) -> None:
    assert (await socket_.init(tenant.token)) == {"type": "connection_ack"}
    for n in range(OPERATIONS):
        await socket_.subscribe(f"s{n}", query=HEAVY, sessionId=str(tenant.session_id))


async def test_the_first_state_is_the_first_page(
    served: daemons.ServedApi, settings: Settings, tenant: Tenant
) -> None:
    added = await _items(settings, tenant, DEFAULT_PAGE + 10)
    async with graphql_socket(served.url) as reader:
        assert (await reader.init(tenant.token)) == {"type": "connection_ack"}
        await reader.subscribe("s", sessionId=str(tenant.session_id))
        first = await reader.updates_until("s", lambda m: m["fileKey"] == added[DEFAULT_PAGE - 1])
        assert [m["fileKey"] for m in first] == added[:DEFAULT_PAGE]
        # A change to an item past the first page still arrives, and nothing else did.
        connection = await asyncpg.connect(settings.database.url)
        try:
            await connection.execute(
                "UPDATE session_media SET status = 'UPLOADED' WHERE file_key = $1", added[-1]
            )
        finally:
            await connection.close()
        (changed,) = await reader.updates_until("s", lambda m: m["fileKey"] == added[-1])
        assert changed["status"] == "UPLOADED"


async def test_subscribers_that_never_read_are_dropped_though_nothing_changes(
    served: daemons.ServedApi, settings: Settings, tenant: Tenant
) -> None:
    await _items(settings, tenant, DEFAULT_PAGE)
    dropped_before = await api_metric(served.url, "mediagate_slow_subscribers_dropped_total")
    sockets = [_small_socket(served) for _ in range(3)]
    async with (
        graphql_socket(served.url, max_queue=1, sock=sockets[0]) as first,
        graphql_socket(served.url, max_queue=1, sock=sockets[1]) as second,
        graphql_socket(served.url, max_queue=1, sock=sockets[2]) as third,
    ):
        for stalled in (first, second, third):
            await _heavy_subscriptions(stalled, tenant)
        # No row changes from here on: only the watchdog can notice them.
        await wait_until(
            lambda: _subscriptions_are(served, 0), "stalled subscribers were never dropped"
        )
    dropped = await api_metric(served.url, "mediagate_slow_subscribers_dropped_total")
    # At least one per socket: the first dropped closes its socket, and a sibling not
    # yet past the timeout then ends with the socket rather than by a drop.
    assert 3 <= dropped - dropped_before <= 3 * OPERATIONS


async def test_a_subscriber_that_resets_mid_send_is_no_error_in_the_log(
    served: daemons.ServedApi, settings: Settings, tenant: Tenant, server_log: Path
) -> None:
    await _items(settings, tenant, DEFAULT_PAGE)
    logged_before = len(server_log.read_bytes())  # noqa: ASYNC240 - a small file
    sock = _small_socket(served)
    async with graphql_socket(served.url, max_queue=1, sock=sock) as resetting:
        await _heavy_subscriptions(resetting, tenant)
        await wait_until(lambda: _subscriptions_are(served, OPERATIONS), "never subscribed")
        # Closed with a reset (linger 0) while the server is mid-way through its sends.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        resetting.connection.transport.abort()
    await wait_until(lambda: _subscriptions_are(served, 0), "the subscriptions outlived the socket")
    async with httpx.AsyncClient(base_url=served.url) as client:
        assert (await client.get("/healthz")).status_code == 200  # it goes on serving
    lines = server_log.read_bytes()[logged_before:].splitlines()  # noqa: ASYNC240
    ours = [json.loads(line) for line in lines if line.startswith(b"{")]
    assert [entry for entry in ours if entry["level"] in ("ERROR", "CRITICAL")] == []
    assert [line for line in lines if line.startswith((b"ERROR", b"CRITICAL"))] == []
