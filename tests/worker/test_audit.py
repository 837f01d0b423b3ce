"""The audit log: an event per change, in the change's own transaction, readable by the
organization it belongs to only, a page at a time."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import asyncpg
import httpx
import pytest

from mediagate.config import Settings
from mediagate.db import engine
from mediagate.db import media_rows as repo
from mediagate.domain.audit import Actor
from mediagate.domain.status import MediaStatus
from mediagate.worker.pipeline import MediaPipeline
from tests.support import media
from tests.support.api import Tenant, error_codes, graphql
from tests.support.daemons import run_cli
from tests.support.flow import CONFIRM_UPLOAD, GET_UPLOAD_URL, put_object
from tests.support.readback import row

AUDIT = """
query Audit($sessionId: UUID, $mediaId: UUID, $first: Int, $after: String) {
  auditEvents(sessionId: $sessionId, mediaId: $mediaId, first: $first, after: $after) {
    edges { cursor node { action fromStatus toStatus reason actor reference mediaId } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def _post(
    api: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str
) -> httpx.Response:
    return await api.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )


async def _issue(api: httpx.AsyncClient, tenant: Tenant, filename: str) -> httpx.Response:
    variables = {
        "sessionId": str(tenant.session_id),
        "filename": filename,
        "contentType": "image/jpeg",
    }
    return await _post(api, GET_UPLOAD_URL, variables, tenant.token)


async def _events(api: httpx.AsyncClient, tenant: Tenant, **variables: Any) -> dict[str, Any]:
    body = await graphql(api, AUDIT, variables, tenant.token)
    assert "errors" not in body, body
    connection: dict[str, Any] = body["data"]["auditEvents"]
    return connection


async def test_every_mutation_and_transition_leaves_an_event(
    api: httpx.AsyncClient, pipeline: MediaPipeline, tenant: Tenant
) -> None:
    session = str(tenant.session_id)
    issued = await _issue(api, tenant, "a.jpg")
    ticket = issued.json()["data"]["getUploadUrl"]
    await put_object(ticket["uploadUrl"], media.fixture("landscape_2.jpg"), "image/jpeg")
    confirmed = await _post(
        api, CONFIRM_UPLOAD, {"sessionId": session, "fileKey": ticket["fileKey"]}, tenant.token
    )
    assert confirmed.json()["data"]["confirmUpload"]["status"] == "UPLOADED"
    await pipeline.handle(ticket["fileKey"], 0)

    infected = await _issue(api, tenant, "b.jpg")
    bad = infected.json()["data"]["getUploadUrl"]
    await put_object(bad["uploadUrl"], media.eicar(), "image/jpeg")
    await pipeline.handle(bad["fileKey"], 0)  # the bucket event's way: no confirmUpload

    record = await row(ticket["fileKey"])
    events = [
        edge["node"] for edge in (await _events(api, tenant, mediaId=str(record.id)))["edges"]
    ]
    user = f"user:{tenant.principal.user_id}"
    worker = f"worker:{socket.gethostname()}:{os.getpid()}"
    assert [(e["action"], e["fromStatus"], e["toStatus"], e["actor"]) for e in events] == [
        ("URL_ISSUED", None, "PENDING_UPLOAD", user),
        ("CONFIRMED", "PENDING_UPLOAD", "UPLOADED", user),
        ("STATUS_CHANGED", "UPLOADED", "SCANNING", worker),
        ("STATUS_CHANGED", "SCANNING", "PROCESSING", worker),
        ("STATUS_CHANGED", "PROCESSING", "COMPLETED", worker),
    ]
    # The request's id (answered as X-Request-Id), and one job id for the worker's steps.
    assert events[0]["reference"] == issued.headers["x-request-id"]
    assert events[1]["reference"] == confirmed.headers["x-request-id"]
    assert len({e["reference"] for e in events[2:]}) == 1 and events[2]["reference"]

    rejected = await row(bad["fileKey"])
    events = [
        edge["node"] for edge in (await _events(api, tenant, mediaId=str(rejected.id)))["edges"]
    ]
    assert [e["toStatus"] for e in events] == ["PENDING_UPLOAD", "UPLOADED", "SCANNING", "REJECTED"]
    assert events[-1]["reason"].startswith("virus detected")
    assert events[1]["actor"] == worker  # accepted by the worker, the event having come first


async def test_a_rolled_back_change_leaves_no_event(tenant: Tenant, api: httpx.AsyncClient) -> None:
    issued = await _issue(api, tenant, "c.jpg")
    record = await row(issued.json()["data"]["getUploadUrl"]["fileKey"])
    before = await _events(api, tenant, mediaId=str(record.id))

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned):
        async with engine.transaction():
            moved = await repo.transition(
                record.id, MediaStatus.UPLOADED, actor=Actor.operator("test")
            )
            assert moved is not None
            raise Abandoned
    assert (await row(record.file_key)).status is MediaStatus.PENDING_UPLOAD
    assert await _events(api, tenant, mediaId=str(record.id)) == before


async def test_another_organization_reads_nothing(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    issued = await _issue(api, tenant, "d.jpg")
    record = await row(issued.json()["data"]["getUploadUrl"]["fileKey"])
    assert (await _events(api, tenant, mediaId=str(record.id)))["edges"]
    body = await graphql(api, AUDIT, {"sessionId": str(tenant.session_id)}, other_tenant.token)
    assert error_codes(body) == ["FORBIDDEN"]
    theirs = await _events(api, other_tenant, mediaId=str(record.id))
    assert theirs == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}
    body = await graphql(api, AUDIT, {"sessionId": str(tenant.session_id)}, None)
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_pages_follow_their_cursor(api: httpx.AsyncClient, tenant: Tenant) -> None:
    for n in range(5):
        await _issue(api, tenant, f"{n}.jpg")
    seen: list[str] = []
    after = None
    while True:
        page = await _events(api, tenant, sessionId=str(tenant.session_id), first=2, after=after)
        seen += [edge["node"]["mediaId"] for edge in page["edges"]]
        assert len(page["edges"]) <= 2
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 5
    for bad in ({"first": 0}, {"first": 101}, {"after": "bm9wZQ"}, {}):
        body = await graphql(api, AUDIT, {"sessionId": str(tenant.session_id), **bad}, tenant.token)
        if bad:
            assert error_codes(body) == ["BAD_USER_INPUT"], bad
    body = await graphql(api, AUDIT, {}, tenant.token)
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_operators_read_the_trail_and_purge_it_past_retention(
    env: dict[str, str], api: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    issued = await _issue(api, tenant, "e.jpg")
    record = await row(issued.json()["data"]["getUploadUrl"]["fileKey"])
    lines = run_cli(env, "audit", "--session", str(tenant.session_id)).stdout.splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["url_issued"]
    assert json.loads(lines[0])["media_id"] == str(record.id)

    connection = await asyncpg.connect(settings.database.url)
    try:
        await connection.execute(
            "INSERT INTO audit_events (occurred_at, organization_id, session_id, media_id, "
            "action, to_status, actor) VALUES (now() - interval '2 days', $1, $2, $3, "
            "'status_changed', 'COMPLETED', 'operator:test')",
            tenant.principal.organization_id,
            tenant.session_id,
            record.id,
        )
    finally:
        await connection.close()
    assert len(run_cli(env, "audit", "--media", str(record.id)).stdout.splitlines()) == 2
    assert int(run_cli({**env, "AUDIT_RETENTION_DAYS": "1"}, "audit", "--purge").stdout) >= 1
    remaining = run_cli(env, "audit", "--media", str(record.id)).stdout.splitlines()
    assert [json.loads(line)["action"] for line in remaining] == ["url_issued"]
