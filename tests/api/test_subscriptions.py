"""Subscription.mediaUpdated over graphql-transport-ws, on `mediagate serve` processes."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.exceptions import InvalidStatus

from mediagate.auth.tokens import issue_token
from mediagate.config import Settings
from mediagate.db import media_rows as repo
from mediagate.db.media_changes import APPLICATION_NAME
from mediagate.domain.validation import DEFAULT_PAGE
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.flow import confirm, put_object, request_upload
from tests.support.graphql_ws import GraphQLSocket, graphql_socket
from tests.support.metrics import api_metric
from tests.support.worker_process import WorkerProcess, wait_until

PHOTO = media.fixture("landscape_4.jpg")
FINAL = {"COMPLETED", "REJECTED", "SCAN_FAILED"}
STALL_TIMEOUT = 3


@pytest.fixture(scope="module")
def served(env: dict[str, str], database: None, store: ObjectStore) -> Iterator[daemons.ServedApi]:
    overrides = {
        "WS_INIT_TIMEOUT": "1",
        "WS_MAX_OPERATIONS": "3",
        "WS_STALL_TIMEOUT": str(STALL_TIMEOUT),
        "GRAPHQL_MAX_ALIASES": "40",
    }
    with daemons.serve_api({**env, **overrides}, "--workers", "1") as api:
        yield api


async def _acked(socket_: GraphQLSocket, token: str) -> None:
    assert (await socket_.init(token)) == {"type": "connection_ack"}


async def _ticket(url: str, tenant: Tenant, filename: str = "photo.jpg") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as client:
        return await request_upload(client, tenant, filename)


async def _confirmed(url: str, tenant: Tenant, stage: str | None = None) -> dict[str, Any]:
    """An upload taken to UPLOADED (its first transition, the first one announced)."""
    async with httpx.AsyncClient(base_url=url) as client:
        ticket = await request_upload(client, tenant, stage=stage)
        await put_object(ticket["uploadUrl"], PHOTO, "image/jpeg")
        assert "errors" not in await confirm(client, tenant, ticket["fileKey"])
    return ticket


async def test_each_organization_sees_only_its_own_session(
    served: daemons.ServedApi, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with graphql_socket(served.url) as mine, graphql_socket(served.url) as theirs:
        await _acked(mine, tenant.token)
        await _acked(theirs, other_tenant.token)
        await mine.subscribe("s", sessionId=str(tenant.session_id))
        await theirs.subscribe("s", sessionId=str(other_tenant.session_id))
        first_mine = await _confirmed(served.url, tenant)
        first_theirs = await _confirmed(served.url, other_tenant)
        second_mine = await _confirmed(served.url, tenant)
        second_theirs = await _confirmed(served.url, other_tenant)

        seen = await mine.updates_until("s", lambda m: m["fileKey"] == second_mine["fileKey"])
        assert [m["fileKey"] for m in seen] == [first_mine["fileKey"], second_mine["fileKey"]]
        assert {m["status"] for m in seen} == {"UPLOADED"}
        seen = await theirs.updates_until("s", lambda m: m["fileKey"] == second_theirs["fileKey"])
        assert [m["fileKey"] for m in seen] == [first_theirs["fileKey"], second_theirs["fileKey"]]


async def test_refusals_are_typed(
    served: daemons.ServedApi, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        await socket_.subscribe("other", sessionId=str(other_tenant.session_id))
        refused = await socket_.receive()
        assert refused["type"] == "error" and refused["id"] == "other"
        assert [e["extensions"]["code"] for e in refused["payload"]] == ["FORBIDDEN"]
        await socket_.subscribe("missing", sessionId=str(uuid.uuid4()))
        refused = await socket_.receive()
        assert [e["extensions"]["code"] for e in refused["payload"]] == ["NOT_FOUND"]
        await socket_.subscribe("bad", query="subscription { nothing }")
        refused = await socket_.receive()
        assert [e["extensions"]["code"] for e in refused["payload"]] == [
            "GRAPHQL_VALIDATION_FAILED"
        ]


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_a_connection_without_a_valid_token_is_refused(
    served: daemons.ServedApi, token: str | None
) -> None:
    async with graphql_socket(served.url) as socket_:
        await socket_.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            if token
            else {"type": "connection_init"}
        )
        assert await socket_.close_code() == 4403


async def test_an_expired_token_is_refused_and_one_that_expires_closes_the_socket(
    served: daemons.ServedApi, settings: Settings, tenant: Tenant
) -> None:
    async with graphql_socket(served.url) as socket_:
        expired = issue_token(settings, tenant.principal, -60)
        await socket_.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {expired}"}}
        )
        assert await socket_.close_code() == 4403
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, issue_token(settings, tenant.principal, 5))
        await socket_.subscribe("s", sessionId=str(tenant.session_id))
        assert await socket_.close_code(timeout=60) == 4403


async def test_a_late_subscriber_first_gets_the_current_state(
    served: daemons.ServedApi, tenant: Tenant
) -> None:
    earlier = [await _ticket(served.url, tenant, f"earlier-{n}.jpg") for n in range(3)]
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        await socket_.subscribe("s", sessionId=str(tenant.session_id))
        last = earlier[-1]["fileKey"]
        seen = await socket_.updates_until("s", lambda m: m["fileKey"] == last)
    assert [m["fileKey"] for m in seen] == [ticket["fileKey"] for ticket in earlier]


async def test_protocol_violations_close_with_the_protocols_codes(
    served: daemons.ServedApi, tenant: Tenant
) -> None:
    async with graphql_socket(served.url, subprotocols=("graphql-ws",)) as socket_:
        assert await socket_.close_code() == 4406
    async with graphql_socket(served.url) as socket_:
        assert await socket_.close_code() == 4408  # no connection_init within WS_INIT_TIMEOUT
    async with graphql_socket(served.url) as socket_:
        await socket_.subscribe("s", sessionId=str(tenant.session_id))
        assert await socket_.close_code() == 4401
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        await socket_.send({"type": "connection_init", "payload": {}})
        assert await socket_.close_code() == 4429
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        await socket_.subscribe("s", sessionId=str(tenant.session_id))
        await socket_.subscribe("s", sessionId=str(tenant.session_id))
        assert await socket_.close_code() == 4409
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        await socket_.connection.send("{not json")
        assert await socket_.close_code() == 4400


async def test_operations_per_connection_and_message_size_are_bounded(
    served: daemons.ServedApi, tenant: Tenant
) -> None:
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        for n in range(4):  # WS_MAX_OPERATIONS is 3 on this server
            await socket_.subscribe(f"s{n}", sessionId=str(tenant.session_id))
        refused = await socket_.receive()
        assert refused["id"] == "s3" and refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_OPERATIONS"
        # A finished operation frees its place.
        await socket_.send({"id": "s0", "type": "complete"})
        await socket_.subscribe("s4", sessionId=str(tenant.session_id))
        await socket_.send({"type": "ping"})
        assert await socket_.receive() == {"type": "pong"}  # s4 was not refused before it
    async with graphql_socket(served.url, max_size=None) as socket_:
        await _acked(socket_, tenant.token)
        await socket_.connection.send("x" * (64 * 1024 + 1))
        assert await socket_.close_code() == 1009


async def test_queries_and_mutations_run_over_the_socket_too(
    served: daemons.ServedApi, tenant: Tenant
) -> None:
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        await socket_.subscribe("q", query="{ uploadPolicy { defaultStage } }")
        assert await socket_.receive() == {
            "id": "q",
            "type": "next",
            "payload": {"data": {"uploadPolicy": {"defaultStage": "general"}}},
        }
        assert await socket_.receive() == {"id": "q", "type": "complete"}


async def test_a_subscriber_that_does_not_read_is_dropped_and_others_are_not(
    served: daemons.ServedApi, settings: Settings, tenant: Tenant
) -> None:
    """Rounds of changes to its items while one subscriber has stopped reading: that one
    is dropped (for what waits, or for how long it waited, whichever comes first); the
    one that reads sees every round through."""
    items = [await _ticket(served.url, tenant, f"{'n' * 200}-{n}.jpg") for n in range(60)]
    keys = [item["fileKey"] for item in items]
    wide = " ".join(f"a{n}: originalFilename" for n in range(40))
    heavy = (
        f"subscription($sessionId: UUID!) {{ mediaUpdated(sessionId: $sessionId) {{ {wide} }} }}"
    )
    small = socket.socket()
    small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    small.connect(("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
    async with (
        graphql_socket(served.url, max_queue=1, sock=small) as stalled,
        graphql_socket(served.url) as reader,
    ):
        await _acked(stalled, tenant.token)
        await _acked(reader, tenant.token)
        await stalled.subscribe("s", query=heavy, sessionId=str(tenant.session_id))
        await reader.subscribe("s", sessionId=str(tenant.session_id))
        # The first state is the first page; the rounds below change every item.
        await reader.updates_until("s", lambda m: m["fileKey"] == keys[DEFAULT_PAGE - 1])
        connection = await asyncpg.connect(settings.database.url)
        try:
            rounds = 0
            while await _subscriptions_are(served, 2):
                rounds += 1
                assert rounds < 1000, "the stalled subscriber was never dropped"
                status = "UPLOADED" if rounds % 2 else "PENDING_UPLOAD"
                for group in range(0, len(keys), 10):
                    await connection.execute(
                        "UPDATE session_media SET status = $1 WHERE file_key = ANY($2)",
                        status,
                        keys[group : group + 10],
                    )
                await _until_all_have(reader, keys, status)
        finally:
            await connection.close()
        assert await _subscriptions_are(served, 1)
        # The stalled one was cut off without a close frame (it could never be written).
        assert await stalled.close_code(timeout=60) is None
        # The other goes on.
        ticket = await _confirmed(served.url, tenant)
        await reader.updates_until("s", lambda m: m["fileKey"] == ticket["fileKey"])


async def _subscriptions_are(served: daemons.ServedApi, count: int) -> bool:
    return await api_metric(served.url, "mediagate_subscriptions") == count


async def _until_all_have(reader: GraphQLSocket, keys: list[str], status: str) -> None:
    latest: dict[str, str] = {}

    def done(media_: dict[str, Any]) -> bool:
        latest[media_["fileKey"]] = media_["status"]
        return all(latest.get(key) == status for key in keys)

    await reader.updates_until("s", done)


async def test_websocket_connections_are_capped_apart_from_http(
    env: dict[str, str], database: None, tenant: Tenant
) -> None:
    with daemons.serve_api({**env, "WS_MAX_CONNECTIONS": "2"}, "--workers", "1") as api:
        async with graphql_socket(api.url) as first, graphql_socket(api.url) as second:
            await _acked(first, tenant.token)
            await _acked(second, tenant.token)
            with pytest.raises(InvalidStatus) as refused:
                async with graphql_socket(api.url):
                    pass
            assert refused.value.response.status_code == 503
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{api.url}/healthz")).status_code == 200
        async with graphql_socket(api.url) as again:  # places are given back
            await _acked(again, tenant.token)


async def test_changes_made_while_the_listener_was_cut_off_are_delivered(
    served: daemons.ServedApi, settings: Settings, tenant: Tenant
) -> None:
    ticket = await _ticket(served.url, tenant)
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        await socket_.subscribe("s", sessionId=str(tenant.session_id))
        await socket_.updates_until("s", lambda m: m["fileKey"] == ticket["fileKey"])
        connection = await asyncpg.connect(settings.database.url)
        try:
            # The listener's connection is gone (waited for) before the change commits,
            # so its notification reaches nobody: only the resync can deliver it.
            async with connection.transaction():
                cut = await connection.fetchval(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) "
                    "FROM pg_stat_activity "
                    "WHERE application_name = $1 AND datname = current_database()",
                    APPLICATION_NAME,
                )
                assert cut >= 1
                await connection.execute(
                    "UPDATE session_media SET status = 'REJECTED', rejection_reason = 'test' "
                    "WHERE file_key = $1",
                    ticket["fileKey"],
                )
        finally:
            await connection.close()
        seen = await socket_.updates_until("s", lambda m: m["status"] == "REJECTED")
        assert seen[-1]["fileKey"] == ticket["fileKey"]


async def test_a_workers_transitions_reach_a_subscriber_of_another_api_process(
    served: daemons.ServedApi,
    env: dict[str, str],
    settings: Settings,
    clamd: daemons.Clamd,
    tenant: Tenant,
) -> None:
    worker = WorkerProcess(env)
    await worker.start(settings)
    try:
        with daemons.serve_api(env, "--workers", "1") as uploading_api:
            async with graphql_socket(served.url) as socket_:
                await _acked(socket_, tenant.token)
                await socket_.subscribe("s", sessionId=str(tenant.session_id))
                async with httpx.AsyncClient(base_url=uploading_api.url) as client:
                    ticket = await request_upload(client, tenant)
                    await put_object(ticket["uploadUrl"], PHOTO, "image/jpeg")
                    assert "errors" not in await confirm(client, tenant, ticket["fileKey"])
                seen = await socket_.updates_until(
                    "s", lambda m: m["fileKey"] == ticket["fileKey"] and m["status"] in FINAL
                )
    finally:
        worker.stop()
    statuses = [m["status"] for m in seen if m["fileKey"] == ticket["fileKey"]]
    assert statuses[-1] == "COMPLETED"
    assert "UPLOADED" in statuses or "SCANNING" in statuses or "PROCESSING" in statuses
    assert seen[-1]["url"] and seen[-1]["width"] > 0
    record = await repo.find_by_key(ticket["fileKey"])
    assert record is not None and record.status.value == "COMPLETED"


async def test_a_subscription_over_http_is_refused(api: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await api.post(
        "/graphql",
        json={
            "query": "subscription($s: UUID!) { mediaUpdated(sessionId: $s) { id } }",
            "variables": {"s": str(tenant.session_id)},
        },
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_stage_filter_passes_only_that_stages_media(
    served: daemons.ServedApi, tenant: Tenant
) -> None:
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        await socket_.subscribe("s", sessionId=str(tenant.session_id), stage="intake")
        other = await _confirmed(served.url, tenant, stage="inspection")
        wanted = await _confirmed(served.url, tenant, stage="intake")
        seen = await socket_.updates_until("s", lambda m: m["fileKey"] == wanted["fileKey"])
    assert other["fileKey"] not in {m["fileKey"] for m in seen}
    assert {m["stage"] for m in seen} == {"intake"}


async def test_an_id_completed_can_be_used_again_and_nothing_outlives_the_socket(
    served: daemons.ServedApi, tenant: Tenant
) -> None:
    await _confirmed(served.url, tenant)
    async with graphql_socket(served.url) as socket_:
        await _acked(socket_, tenant.token)
        for _ in range(3):
            await socket_.subscribe("same", sessionId=str(tenant.session_id))
            assert (await socket_.receive())["type"] == "next"  # the current state
            await socket_.send({"id": "same", "type": "complete"})
        await socket_.subscribe("same", sessionId=str(tenant.session_id))
        assert (await socket_.receive())["type"] == "next"
    await wait_until(lambda: _subscriptions_are(served, 0), "a subscription outlived its socket")
