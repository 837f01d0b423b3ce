"""An organization's usage counter against the store: kept right by every change (upload,
rejection, processing, deletion, purge), and set right by the reconciler when it drifts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from mediagate.config import Settings
from mediagate.db import usage_rows
from mediagate.db.engine import pool
from mediagate.events.publisher import JobPublisher
from mediagate.services.operations import purge_session
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.reconciler import Bounds, Reconciler
from tests.support import media
from tests.support.api import Tenant, graphql
from tests.support.readback import row, stage

BOUNDS = Bounds(stuck_after=timedelta(minutes=30), grace=timedelta(hours=1))
DELETE = "mutation D($id: UUID!) { deleteMedia(id: $id) { status } }"


def _held(store: ObjectStore, session_id: uuid.UUID) -> int:
    """Bytes the store holds under the session's prefixes."""
    return sum(
        item.size or 0
        for prefix in (f"sessions/{session_id}/", f"processed/{session_id}/")
        for item in store.client.list_objects(store.bucket, prefix=prefix, recursive=True)
    )


async def _used(tenant: Tenant) -> int:
    return (await usage_rows.usage(tenant.principal.organization_id)).used_bytes


async def test_the_counter_is_what_the_store_holds_after_every_kind_of_change(
    api: httpx.AsyncClient,
    tenant: Tenant,
    store: ObjectStore,
    pipeline: MediaPipeline,
) -> None:
    photos = [
        await stage(api, tenant, media.fixture(name), "p.jpg", "image/jpeg")
        for name in ("landscape_3.jpg", "landscape_6.jpg", "landscape_8.jpg")
    ]
    virus = await stage(api, tenant, media.eicar(), "v.jpg", "image/jpeg")
    assert await _used(tenant) == _held(store, tenant.session_id), "originals, confirmed"
    for key in [*photos, virus]:
        await pipeline.handle(key, 0)
    assert await _used(tenant) == _held(store, tenant.session_id), "copies; virus gone"
    deleted = await graphql(api, DELETE, {"id": str((await row(photos[0])).id)}, tenant.token)
    assert deleted["data"]["deleteMedia"]["status"] == "DELETED"
    assert await _used(tenant) == _held(store, tenant.session_id) > 0, "after a deletion"

    assert await purge_session(store, tenant.session_id) == 4
    assert await _used(tenant) == 0 == _held(store, tenant.session_id), "after the purge"


async def test_the_reconciler_sets_a_drifted_counter_right_from_the_listing(
    api: httpx.AsyncClient,
    tenant: Tenant,
    store: ObjectStore,
    pipeline: MediaPipeline,
    settings: Settings,
) -> None:
    key = await stage(api, tenant, media.fixture("landscape_3.jpg"), "p.jpg", "image/jpeg")
    await pipeline.handle(key, 0)
    outstanding = await graphql(
        api,
        """mutation U($s: UUID!) { getUploadUrl(sessionId: $s, filename: "b.jpg",
           contentType: "image/jpeg", size: 777) { fileKey } }""",
        {"s": str(tenant.session_id)},
        tenant.token,
    )
    assert "errors" not in outstanding
    truth = _held(store, tenant.session_id) + 777
    assert await _used(tenant) == truth
    organization = tenant.principal.organization_id
    await pool().execute(  # a counter gone wrong, a while ago
        "UPDATE usage_shards SET used_bytes = used_bytes + 12345,"
        " updated_at = now() - interval '1 minute'"
        " WHERE organization_id = $1 AND shard = (SELECT min(shard) FROM usage_shards"
        " WHERE organization_id = $1)",
        organization,
    )
    await pool().execute(
        "UPDATE usage_shards SET updated_at = now() - interval '1 minute'"
        " WHERE organization_id = $1",
        organization,
    )

    dry = await Reconciler(store, None, BOUNDS).run()
    assert str(organization) in dry.usage_corrected
    assert await _used(tenant) == truth + 12345, "a dry run changes nothing"
    publisher = await JobPublisher.connect(settings)
    try:
        findings = await Reconciler(store, publisher, BOUNDS).run()
    finally:
        await publisher.close()
    assert str(organization) in findings.usage_corrected
    assert await _used(tenant) == truth
    again = await Reconciler(store, None, BOUNDS).run()
    assert str(organization) not in again.usage_corrected, "right now: nothing to report"
