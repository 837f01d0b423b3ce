"""The reconciler on the real stack: each case it handles, and a dry run that changes
nothing. Its clock is moved forward instead of waiting for the bounds to pass; it scans
the whole bucket and database, so each test looks only at its own keys, and drains the
jobs it queued."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mediagate.config import Settings
from mediagate.db import locks
from mediagate.db import media_rows as repo
from mediagate.db.tables import SessionMedia
from mediagate.domain import keys
from mediagate.domain.audit import Actor
from mediagate.domain.multipart import NEVER_COMPLETED
from mediagate.domain.status import MediaStatus
from mediagate.events.publisher import JobPublisher
from mediagate.storage.multipart import MultipartUploads, UploadGone
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.reconciler import (
    LOCK_NAME,
    NEVER_UPLOADED,
    Bounds,
    Findings,
    Reconciler,
)
from mediagate.worker.retries import MAX_CRASHED_ATTEMPTS
from tests.support import daemons, media
from tests.support.api import Tenant, graphql
from tests.support.flow import drain_jobs, put_object, request_upload
from tests.support.multipart import put_part, start
from tests.support.readback import row, stage
from tests.support.worker_process import WorkerProcess, wait_until

BOUNDS = Bounds(stuck_after=timedelta(minutes=30), grace=timedelta(hours=1))
AUDIT = """query($mediaId: UUID) {
  auditEvents(mediaId: $mediaId) { edges { node { action actor } } } }"""


def _later(delta: timedelta) -> Callable[[], datetime]:
    moment = datetime.now(UTC) + delta
    return lambda: moment


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[JobPublisher]:
    connected = await JobPublisher.connect(settings)
    yield connected
    await connected.close()
    await drain_jobs(settings)


async def _reconcile(
    store: ObjectStore, publisher: JobPublisher | None, ahead: timedelta
) -> Findings:
    return await Reconciler(store, publisher, BOUNDS, clock=_later(ahead)).run()


async def test_a_lost_event_ends_completed(
    api: httpx.AsyncClient,
    settings: Settings,
    pipeline: MediaPipeline,
    publisher: JobPublisher,
    store: ObjectStore,
    tenant: Tenant,
) -> None:
    """Written, never confirmed, no bucket event: processed once the URL has expired."""
    await drain_jobs(settings)
    ticket = await request_upload(api, tenant)
    await put_object(ticket["uploadUrl"], media.fixture("landscape_6.jpg"), "image/jpeg")
    key = ticket["fileKey"]
    assert key not in (await _reconcile(store, publisher, timedelta(0))).expired_processed

    findings = await _reconcile(store, publisher, timedelta(seconds=300) + BOUNDS.grace)
    assert key in findings.expired_processed
    queued = [job["fileKey"] for job in await drain_jobs(settings)]
    assert queued.count(key) == 1
    await pipeline.handle(key, 0)  # what a worker does with the job
    assert (await row(key)).status is MediaStatus.COMPLETED


async def test_a_url_that_expired_unused_is_closed(
    api: httpx.AsyncClient, publisher: JobPublisher, store: ObjectStore, tenant: Tenant
) -> None:
    ticket = await request_upload(api, tenant)
    findings = await _reconcile(store, publisher, timedelta(seconds=300) + BOUNDS.grace)
    assert ticket["fileKey"] in findings.expired_closed
    record = await row(ticket["fileKey"])
    assert record.status is MediaStatus.REJECTED
    assert record.rejection_reason == NEVER_UPLOADED
    events = await graphql(api, AUDIT, {"mediaId": str(record.id)}, tenant.token)
    last = events["data"]["auditEvents"]["edges"][-1]["node"]
    assert last["action"] == "STATUS_CHANGED" and last["actor"].startswith("worker:")


async def test_a_stuck_upload_is_queued_again_unless_its_job_runs(
    api: httpx.AsyncClient,
    settings: Settings,
    publisher: JobPublisher,
    store: ObjectStore,
    tenant: Tenant,
) -> None:
    key = await stage(api, tenant, media.fixture("landscape_7.jpg"), "s.jpg", "image/jpeg")
    await drain_jobs(settings)  # the job is lost
    ahead = BOUNDS.stuck_after + timedelta(seconds=5)
    async with locks.advisory_lock(key) as held:  # a worker is on it
        assert held
        findings = await _reconcile(store, publisher, ahead)
    assert key not in findings.requeued_stuck
    assert key not in [job["fileKey"] for job in await drain_jobs(settings)]

    findings = await _reconcile(store, publisher, ahead)
    assert key in findings.requeued_stuck
    assert [job["fileKey"] for job in await drain_jobs(settings)].count(key) == 1
    record = await row(key)
    assert record.status is MediaStatus.UPLOADED
    events = await graphql(api, AUDIT, {"mediaId": str(record.id)}, tenant.token)
    assert events["data"]["auditEvents"]["edges"][-1]["node"]["action"] == "REQUEUED"


async def test_an_abandoned_multipart_upload_is_aborted_once_its_urls_expire(
    api: httpx.AsyncClient, publisher: JobPublisher, store: ObjectStore, tenant: Tenant
) -> None:
    ticket = (await start(api, tenant, 20 * 1024 * 1024))["data"]["startMultipartUpload"]
    await put_part(ticket["parts"][0]["url"], b"\0" * ticket["partSize"])
    key, uploads = ticket["fileKey"], MultipartUploads(store)
    assert key not in (await _reconcile(store, publisher, BOUNDS.grace)).expired_closed
    assert len(await uploads.parts(key, ticket["uploadId"])) == 1

    findings = await _reconcile(store, publisher, timedelta(seconds=300) + BOUNDS.grace)
    assert key in findings.expired_closed
    record = await row(key)
    assert record.status is MediaStatus.REJECTED
    assert record.rejection_reason == NEVER_COMPLETED
    with pytest.raises(UploadGone):
        await uploads.parts(key, ticket["uploadId"])


async def test_multipart_uploads_without_an_open_row_are_aborted(
    api: httpx.AsyncClient, publisher: JobPublisher, store: ObjectStore, tenant: Tenant
) -> None:
    """A start whose row was never written. (The S3 test server dates every upload in
    2010, so the grace period is not seen here; Ceph RGW's dates are real.)"""
    uploads = MultipartUploads(store)
    stray = keys.upload_key(tenant.session_id, "general", ".mp4")
    stray_id = await uploads.create(stray, "video/mp4")
    kept = (await start(api, tenant, 20 * 1024 * 1024))["data"]["startMultipartUpload"]

    dry = await _reconcile(store, None, timedelta(0))
    assert stray in dry.multipart_aborted and kept["fileKey"] not in dry.multipart_aborted
    assert await uploads.parts(stray, stray_id) == []

    findings = await _reconcile(store, publisher, timedelta(0))
    assert stray in findings.multipart_aborted
    with pytest.raises(UploadGone):
        await uploads.parts(stray, stray_id)
    assert await uploads.parts(kept["fileKey"], kept["uploadId"]) == []


async def test_a_job_that_keeps_dying_midway_is_parked(
    api: httpx.AsyncClient,
    settings: Settings,
    publisher: JobPublisher,
    store: ObjectStore,
    tenant: Tenant,
) -> None:
    """A long job's message is acked early: when its worker dies, only the reconciler
    sees it (SCANNING, its lock free) and counts the crash."""
    key = await stage(api, tenant, media.fixture("landscape_7.jpg"), "d.jpg", "image/jpeg")
    await drain_jobs(settings)
    actor = Actor.worker(job_id="died")
    assert await repo.transition((await row(key)).id, MediaStatus.SCANNING, actor=actor)
    ahead = BOUNDS.stuck_after + timedelta(seconds=5)
    for crash in range(1, MAX_CRASHED_ATTEMPTS):
        findings = await _reconcile(store, publisher, ahead)
        assert key in findings.requeued_stuck, crash
        assert [job["fileKey"] for job in await drain_jobs(settings)].count(key) == 1
        assert (await row(key)).crashed_attempts == crash

    findings = await _reconcile(store, publisher, ahead)
    assert key in findings.crashed_parked and key not in findings.requeued_stuck
    record = await row(key)
    assert record.status is MediaStatus.SCAN_FAILED
    assert "midway" in (record.rejection_reason or "")
    assert key not in [job["fileKey"] for job in await drain_jobs(settings)]


async def test_orphan_objects_are_deleted_after_the_grace_period(
    publisher: JobPublisher, store: ObjectStore, tenant: Tenant
) -> None:
    upload = keys.upload_key(tenant.session_id, "general", ".jpg")
    output = keys.processed_key(upload, ".jpg")
    for key in (upload, output):
        store.client.put_object(store.bucket, key, io.BytesIO(b"orphan"), 6)
    fresh = await _reconcile(store, publisher, timedelta(0))
    assert upload not in fresh.orphans_deleted and output not in fresh.orphans_deleted
    assert await store.head(upload) is not None

    findings = await _reconcile(store, publisher, BOUNDS.grace + timedelta(seconds=5))
    assert {upload, output} <= set(findings.orphans_deleted)
    assert await store.head(upload) is None and await store.head(output) is None


DELETE = "mutation($id: UUID!) { deleteMedia(id: $id) { status } }"


async def test_originals_whose_rows_are_done_with_them_are_swept(
    api: httpx.AsyncClient, publisher: JobPublisher, store: ObjectStore, tenant: Tenant
) -> None:
    """A PUT through a URL still valid after its item was deleted (no bucket event came),
    and originals left by finished rows, go after the grace period; a row that may still
    need its original keeps it."""
    deleted = await request_upload(api, tenant)
    media_id = (await row(deleted["fileKey"])).id
    body = await graphql(api, DELETE, {"id": str(media_id)}, tenant.token)
    assert body["data"]["deleteMedia"]["status"] == "DELETED"
    await put_object(deleted["uploadUrl"], media.fixture("landscape_6.jpg"), "image/jpeg")
    left = {deleted["fileKey"]}
    for final in (MediaStatus.REJECTED, MediaStatus.COMPLETED):
        left.add(await _original_with_status(api, tenant, final))
    kept = {
        await _original_with_status(api, tenant, needing)
        for needing in (MediaStatus.SCAN_FAILED, MediaStatus.UPLOADED)
    }

    fresh = await _reconcile(store, publisher, timedelta(0))
    assert not (left | kept) & set(fresh.orphans_deleted)
    findings = await _reconcile(store, publisher, BOUNDS.grace + timedelta(seconds=5))
    assert left <= set(findings.orphans_deleted) and not kept & set(findings.orphans_deleted)
    for key in left:
        assert await store.head(key) is None, key
    for key in kept:
        assert await store.head(key) is not None, key


async def _original_with_status(api: httpx.AsyncClient, tenant: Tenant, status: MediaStatus) -> str:
    """An upload whose row is set straight to `status` with its original in the store."""
    ticket = await request_upload(api, tenant)
    await put_object(ticket["uploadUrl"], media.fixture("landscape_6.jpg"), "image/jpeg")
    await SessionMedia.update(
        {
            SessionMedia.status: status.value,
            SessionMedia.rejection_reason: "set by the test",
            SessionMedia.processed_key: keys.processed_key(ticket["fileKey"], ".jpg"),
            SessionMedia.processed_at: datetime.now(UTC),
        }
    ).where(SessionMedia.file_key == ticket["fileKey"])
    return str(ticket["fileKey"])


async def test_a_completed_item_without_its_file_is_reported_not_fixed(
    api: httpx.AsyncClient,
    pipeline: MediaPipeline,
    publisher: JobPublisher,
    store: ObjectStore,
    tenant: Tenant,
) -> None:
    key = await stage(api, tenant, media.fixture("landscape_8.jpg"), "t.jpg", "image/jpeg")
    await pipeline.handle(key, 0)
    record = await row(key)
    assert record.status is MediaStatus.COMPLETED and record.processed_key is not None
    assert (
        record.processed_key
        not in (await _reconcile(store, publisher, timedelta(0))).completed_missing_object
    )
    await store.delete(record.processed_key)

    findings = await _reconcile(store, publisher, timedelta(0))
    assert record.processed_key in findings.completed_missing_object
    assert (await row(key)).status is MediaStatus.COMPLETED


async def test_a_dry_run_changes_nothing(
    api: httpx.AsyncClient, settings: Settings, store: ObjectStore, tenant: Tenant
) -> None:
    await drain_jobs(settings)
    unused = await request_upload(api, tenant)
    written = await request_upload(api, tenant)
    await put_object(written["uploadUrl"], media.fixture("landscape_6.jpg"), "image/jpeg")
    stray = keys.upload_key(tenant.session_id, "general", ".jpg")
    store.client.put_object(store.bucket, stray, io.BytesIO(b"orphan"), 6)

    findings = await _reconcile(store, None, timedelta(seconds=300) + BOUNDS.grace)
    assert unused["fileKey"] in findings.expired_closed
    assert written["fileKey"] in findings.expired_processed
    assert stray in findings.orphans_deleted
    assert (await row(unused["fileKey"])).status is MediaStatus.PENDING_UPLOAD
    assert (await row(written["fileKey"])).status is MediaStatus.PENDING_UPLOAD
    assert await store.head(stray) is not None
    assert await drain_jobs(settings) == []


def test_the_command_reports_what_it_found(env: dict[str, str], database: None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mediagate.cli", "reconcile", "--dry-run"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(json.loads(result.stdout)) == set(Findings().counts())


async def test_workers_reconcile_on_their_own_one_at_a_time(
    env: dict[str, str],
    settings: Settings,
    clamd: daemons.Clamd,
    store: ObjectStore,
    tenant: Tenant,
) -> None:
    stray = keys.upload_key(tenant.session_id, "general", ".jpg")
    store.client.put_object(store.bucket, stray, io.BytesIO(b"orphan"), 6)
    port = daemons.free_port()
    quick = {"RECONCILE_INTERVAL": "0.2", "RECONCILE_GRACE": "0.001"}
    worker = WorkerProcess({**env, **quick, "WORKER_METRICS_PORT": str(port)})
    async with locks.advisory_lock(LOCK_NAME) as held:  # another worker's run
        assert held
        await worker.start(settings)
        assert await store.head(stray) is not None
    try:
        # The run counts its findings when it ends, after its deletions: wait for the count.
        async def reported() -> bool:
            return await _orphans_deleted(port) >= 1

        await wait_until(reported, "the worker never reconciled")
        assert await store.head(stray) is None
    finally:
        worker.stop()
        await drain_jobs(settings)


async def _orphans_deleted(metrics_port: int) -> float:
    try:
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    except httpx.TransportError:
        return 0.0  # its metrics server is not listening yet
    counts = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("finding") == "orphans_deleted"
    ]
    return counts[0] if counts else 0.0
