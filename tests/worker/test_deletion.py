"""deleteMedia and `mediagate purge`: files gone, URLs refused, history kept."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

import httpx

from mediagate.domain.status import MediaStatus
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.pipeline import MediaPipeline
from tests.support import media
from tests.support.api import Tenant, error_codes, graphql
from tests.support.flow import MEDIA, put_object, request_upload
from tests.support.readback import row, stage

DELETE = "mutation($id: UUID!) { deleteMedia(id: $id) { id status url posterUrl } }"
AUDIT = """query($mediaId: UUID, $sessionId: UUID) {
  auditEvents(mediaId: $mediaId, sessionId: $sessionId) {
    edges { node { action toStatus actor mediaId } } } }"""


async def _completed(
    api: httpx.AsyncClient, pipeline: MediaPipeline, tenant: Tenant
) -> dict[str, Any]:
    key = await stage(api, tenant, media.fixture("landscape_3.jpg"), "p.jpg", "image/jpeg")
    await pipeline.handle(key, 0)
    record = await row(key)
    assert record.status is MediaStatus.COMPLETED
    body = await graphql(api, MEDIA, {"id": str(record.id)}, tenant.token)
    shown: dict[str, Any] = body["data"]["media"]
    return shown


async def test_deleting_removes_the_files_and_the_urls_stop_working(
    api: httpx.AsyncClient, pipeline: MediaPipeline, tenant: Tenant, store: ObjectStore
) -> None:
    shown = await _completed(api, pipeline, tenant)
    async with httpx.AsyncClient() as client:
        assert (await client.get(shown["url"])).status_code == 200
        body = await graphql(api, DELETE, {"id": shown["id"]}, tenant.token)
        assert body["data"]["deleteMedia"] == {
            "id": shown["id"],
            "status": "DELETED",
            "url": None,
            "posterUrl": None,
        }
        assert (await client.get(shown["url"])).status_code == 404
    record = await row(shown["fileKey"])
    assert record.status is MediaStatus.DELETED and record.processed_key is not None
    assert await store.head(record.processed_key) is None
    assert await store.head(record.file_key) is None
    again = await graphql(api, DELETE, {"id": shown["id"]}, tenant.token)
    assert again["data"]["deleteMedia"]["status"] == "DELETED"  # idempotent
    events = (await graphql(api, AUDIT, {"mediaId": shown["id"]}, tenant.token))["data"]
    last = events["auditEvents"]["edges"][-1]["node"]
    assert last == {
        "action": "DELETED",
        "toStatus": "DELETED",
        "actor": f"user:{tenant.principal.user_id}",
        "mediaId": shown["id"],
    }
    assert sum(e["node"]["action"] == "DELETED" for e in events["auditEvents"]["edges"]) == 1


async def test_another_organization_cannot_delete(
    api: httpx.AsyncClient, pipeline: MediaPipeline, tenant: Tenant, other_tenant: Tenant
) -> None:
    shown = await _completed(api, pipeline, tenant)
    body = await graphql(api, DELETE, {"id": shown["id"]}, other_tenant.token)
    assert error_codes(body) == ["NOT_FOUND"]
    assert (await row(shown["fileKey"])).status is MediaStatus.COMPLETED


async def test_an_item_being_processed_is_not_deleted(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    key = await stage(api, tenant, media.fixture("landscape_1.jpg"), "q.jpg", "image/jpeg")
    record = await row(key)
    assert record.status is MediaStatus.UPLOADED
    body = await graphql(api, DELETE, {"id": str(record.id)}, tenant.token)
    assert error_codes(body) == ["CONFLICT"]
    assert (await row(key)).status is MediaStatus.UPLOADED


async def test_a_file_put_after_its_item_was_deleted_is_removed(
    api: httpx.AsyncClient, pipeline: MediaPipeline, tenant: Tenant, store: ObjectStore
) -> None:
    ticket = await request_upload(api, tenant)
    record = await row(ticket["fileKey"])
    body = await graphql(api, DELETE, {"id": str(record.id)}, tenant.token)
    assert body["data"]["deleteMedia"]["status"] == "DELETED"
    await put_object(ticket["uploadUrl"], media.fixture("landscape_1.jpg"), "image/jpeg")
    await pipeline.handle(ticket["fileKey"], 0)  # its bucket event
    assert await store.head(ticket["fileKey"]) is None
    assert (await row(ticket["fileKey"])).status is MediaStatus.DELETED


async def test_purge_removes_a_session_and_keeps_its_history(
    env: dict[str, str],
    api: httpx.AsyncClient,
    pipeline: MediaPipeline,
    tenant: Tenant,
    store: ObjectStore,
) -> None:
    shown = await _completed(api, pipeline, tenant)
    await request_upload(api, tenant)  # never uploaded
    stray = f"sessions/{tenant.session_id}/general/stray.jpg"
    store.client.put_object(store.bucket, stray, io.BytesIO(b"x"), 1)
    busy = await stage(api, tenant, media.fixture("landscape_1.jpg"), "r.jpg", "image/jpeg")

    refused = _purge(env, tenant)
    assert refused.returncode == 1 and "being processed" in refused.stderr
    await pipeline.handle(busy, 0)
    purged = _purge(env, tenant)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.strip() == "3"
    for prefix in ("sessions/", "processed/"):
        listed = store.client.list_objects(
            store.bucket, prefix=f"{prefix}{tenant.session_id}/", recursive=True
        )
        assert list(listed) == []
    body = await graphql(api, MEDIA, {"id": shown["id"]}, tenant.token)
    assert error_codes(body) == ["NOT_FOUND"]
    history = await graphql(api, AUDIT, {"sessionId": str(tenant.session_id)}, tenant.token)
    deleted = [
        edge["node"]
        for edge in history["data"]["auditEvents"]["edges"]
        if edge["node"]["action"] == "DELETED"
    ]
    assert len(deleted) == 3
    assert {event["actor"].split(":")[0] for event in deleted} == {"operator"}


def _purge(env: dict[str, str], tenant: Tenant) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mediagate.cli", "purge", "--session", str(tenant.session_id)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
    )
