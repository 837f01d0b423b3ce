"""`mediagate worker` as a process on real RabbitMQ: events, jobs, crashes, shutdown."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mediagate.config import Settings
from mediagate.domain.status import MediaStatus
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.broker import (
    close_connection,
    connections_named,
    consumers_at_least,
    queue_state,
)
from tests.support.flow import confirm, drain_jobs, upload
from tests.support.metrics import worker_samples
from tests.support.readback import stage
from tests.support.worker_process import (
    WorkerProcess,
    dead_letters,
    minio_event,
    publish_as_minio,
    wait_for_status,
    wait_until,
)

PHOTO = media.fixture("landscape_4.jpg")


@pytest.fixture
async def worker(
    env: dict[str, str],
    settings: Settings,
    clamd: daemons.Clamd,
    store: ObjectStore,
    api: httpx.AsyncClient,
) -> AsyncIterator[WorkerProcess]:
    await drain_jobs(settings)  # earlier tests' jobs are not this worker's business
    process = WorkerProcess(env)
    await process.start(settings)
    yield process
    process.stop()


def _processed_copies(store: ObjectStore, key: str) -> int:
    stem = key.removeprefix("sessions/").rsplit(".", 1)[0]
    listed = store.client.list_objects(store.bucket, prefix=f"processed/{stem}", recursive=True)
    return sum(1 for _ in listed)


async def test_a_minio_bucket_event_triggers_processing(
    worker: WorkerProcess,
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    store: ObjectStore,
) -> None:
    key = await stage(api, tenant, PHOTO, "my photo.jpg", "image/jpeg", confirmed=False)
    await publish_as_minio(settings, minio_event(settings.s3.bucket, key, len(PHOTO)))
    record = await wait_for_status(key, MediaStatus.COMPLETED, MediaStatus.REJECTED)
    assert record.status is MediaStatus.COMPLETED, record.rejection_reason
    assert _processed_copies(store, key) == 1


async def test_event_twice_plus_confirm_end_in_one_result(
    worker: WorkerProcess,
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    store: ObjectStore,
) -> None:
    key = await stage(api, tenant, PHOTO, "a.jpg", "image/jpeg", confirmed=False)
    event = minio_event(settings.s3.bucket, key, len(PHOTO))
    await publish_as_minio(settings, event)
    await publish_as_minio(settings, event)
    body = await confirm(api, tenant, key, alt="twice")
    assert "errors" not in body, body
    await wait_for_status(key, MediaStatus.COMPLETED)
    # Let every copy of the message be settled before counting results.
    await _queue_idle(settings)
    record = await wait_for_status(key, MediaStatus.COMPLETED)
    assert record.alt_text == "twice"
    assert _processed_copies(store, key) == 1


async def _queue_idle(settings: Settings) -> None:
    async def idle() -> bool:
        state = await queue_state(settings)
        return state is not None and state.messages == 0

    await wait_until(idle, "the media queue never emptied")


async def _stage_webm(
    api: httpx.AsyncClient, tenant: Tenant, directory: Path, size: str, seconds: int
) -> str:
    """A VP8 clip that must be transcoded: slow enough to catch the worker mid-job."""
    clip = media.make_video(
        directory / "clip.webm",
        size=size,
        seconds=seconds,
        audio=False,
        video=["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "2M"],
    )
    return await stage(api, tenant, clip.read_bytes(), "clip.webm", "video/webm")


async def test_redelivery_after_the_worker_is_killed_mid_job(
    env: dict[str, str],
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    store: ObjectStore,
    clamd: daemons.Clamd,
    tmp_path: Path,
) -> None:
    await drain_jobs(settings)
    key = await _stage_webm(api, tenant, tmp_path, "1280x720", seconds=8)
    first = WorkerProcess(env)
    await first.start(settings)
    try:
        await wait_for_status(key, MediaStatus.PROCESSING)
        first.kill()  # SIGKILL: no cleanup, no ack; the broker redelivers
    finally:
        first.stop()
    second = WorkerProcess(env)
    await second.start(settings)
    try:
        record = await wait_for_status(
            key, MediaStatus.COMPLETED, MediaStatus.REJECTED, MediaStatus.SCAN_FAILED
        )
    finally:
        second.stop()
    assert record.status is MediaStatus.COMPLETED, record.rejection_reason
    assert _processed_copies(store, key) == 2  # the video and its poster, once each
    assert await store.head(key) is None


async def test_malformed_messages_end_in_the_dead_letter_queue(
    worker: WorkerProcess, settings: Settings
) -> None:
    await dead_letters(settings)
    await publish_as_minio(settings, b"{not json")
    await publish_as_minio(settings, json.dumps({"hello": "world"}).encode())

    async def two_dead() -> bool:
        found.extend(await dead_letters(settings))
        return len(found) >= 2

    found: list[Any] = []
    await wait_until(two_dead, "malformed messages were not dead-lettered")
    reasons = sorted(m.headers["x-mediagate-reason"] for m in found)
    assert reasons[0].startswith("neither a processing job") and reasons[1].startswith("not JSON")


async def test_twenty_concurrent_uploads_all_complete(
    worker: WorkerProcess, api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    photos = [media.fixture(f"landscape_{n % 8 + 1}.jpg") for n in range(20)]
    results = await asyncio.gather(*(upload(api, tenant, photo) for photo in photos))
    for result in results:
        record = await wait_for_status(
            result["fileKey"], MediaStatus.COMPLETED, MediaStatus.REJECTED
        )
        assert record.status is MediaStatus.COMPLETED, record.rejection_reason


async def test_sigterm_lets_the_job_in_flight_finish(
    env: dict[str, str],
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    clamd: daemons.Clamd,
    tmp_path: Path,
) -> None:
    await drain_jobs(settings)
    key = await _stage_webm(api, tenant, tmp_path, "640x360", seconds=6)
    process = WorkerProcess(env)
    await process.start(settings)
    try:
        await wait_for_status(key, MediaStatus.SCANNING, MediaStatus.PROCESSING)
        assert process.terminate() == 0
    finally:
        process.stop()
    record = await wait_for_status(key, MediaStatus.COMPLETED, timeout=5)
    assert record.status is MediaStatus.COMPLETED


async def test_worker_heartbeat_for_container_healthchecks(
    env: dict[str, str], settings: Settings, clamd: daemons.Clamd, tmp_path: Path
) -> None:
    heartbeat = tmp_path / "alive"
    process = WorkerProcess(env, "--heartbeat", str(heartbeat))
    await process.start(settings)
    try:

        async def beating() -> bool:
            return heartbeat.exists()

        await wait_until(beating, "the worker never touched its heartbeat file")
        assert process.terminate() == 0
    finally:
        process.stop()


async def test_retries_go_through_the_delay_queues_then_an_orphan_is_deleted(
    worker: WorkerProcess, settings: Settings, store: ObjectStore, tmp_path: Path
) -> None:
    """No row for the key: retried via the TTL queues (100 ms, 200 ms), then deleted."""
    import uuid

    key = f"sessions/{uuid.uuid4()}/general/{uuid.uuid4()}.jpg"
    source = tmp_path / "orphan.jpg"
    source.write_bytes(PHOTO)
    await store.upload(key, source, "image/jpeg", {})
    await publish_as_minio(settings, minio_event(settings.s3.bucket, key, len(PHOTO)))

    async def deleted() -> bool:
        return await store.head(key) is None

    await wait_until(deleted, "the orphan was never deleted")
    assert await dead_letters(settings) == []


async def test_broker_connection_drops_mid_job_are_not_crashes(
    worker: WorkerProcess,
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    store: ObjectStore,
    tmp_path: Path,
) -> None:
    """Three drops during one job: the job goes on, each redelivery joins it."""
    clip = media.make_video(
        tmp_path / "clip.mp4",
        size="1920x1080",
        seconds=12,
        audio=False,
        video=["-c:v", "mpeg4", "-q:v", "5"],  # not H.264: transcoded, which takes a while
    )
    key = await stage(api, tenant, clip.read_bytes(), "clip.mp4", "video/mp4")
    assert worker.process is not None
    ours = f"mediagate-worker {socket.gethostname()} {worker.process.pid}"
    await wait_for_status(key, MediaStatus.PROCESSING)
    for _ in range(3):
        (connection,) = connections_named(ours)
        close_connection(connection)

        async def reconnected(previous: str = connection) -> bool:
            current = connections_named(ours)
            return bool(current) and current != [previous] and await consumers_at_least(settings, 1)

        await wait_until(reconnected, "the worker never reconnected")
    record = await wait_for_status(
        key, MediaStatus.COMPLETED, MediaStatus.REJECTED, MediaStatus.SCAN_FAILED
    )
    assert record.status is MediaStatus.COMPLETED, record.rejection_reason
    assert record.crashed_attempts == 0
    assert _processed_copies(store, key) == 2
    assert await dead_letters(settings) == []


async def test_the_workers_metrics_move_as_a_real_flow_runs(
    env: dict[str, str],
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    clamd: daemons.Clamd,
    store: ObjectStore,
) -> None:
    await drain_jobs(settings)
    await dead_letters(settings)
    port = daemons.free_port()
    process = WorkerProcess({**env, "WORKER_METRICS_PORT": str(port)})
    await process.start(settings)
    try:
        before = worker_samples(port)
        assert before[("mediagate_worker_scanner_up", ())] == 1
        assert before[("mediagate_worker_scratch_free_bytes", ())] > 0
        photo = await upload(api, tenant, PHOTO)
        virus = await upload(api, tenant, media.eicar(), "eicar.jpg")
        await wait_for_status(photo["fileKey"], MediaStatus.COMPLETED)
        await wait_for_status(virus["fileKey"], MediaStatus.REJECTED)
        orphan = f"sessions/{uuid.uuid4()}/general/{uuid.uuid4()}.jpg"
        await publish_as_minio(settings, minio_event(settings.s3.bucket, orphan, 10))
        await publish_as_minio(settings, b"{not json")

        async def counted() -> bool:
            now = worker_samples(port)
            return (
                now[("mediagate_worker_jobs_total", ("skipped",))] >= 1  # the orphan, at last
                and now[("mediagate_worker_dead_letters_total", ())] >= 1
            )

        await wait_until(counted, "the worker's counters did not move")
        after = worker_samples(port)
    finally:
        process.stop()
    assert after[("mediagate_worker_jobs_total", ("completed",))] == 1
    assert after[("mediagate_worker_jobs_total", ("virus",))] == 1
    assert after[("mediagate_worker_jobs_total", ("rejected",))] == 0
    assert after[("mediagate_worker_retries_total", ())] == 2  # the orphan, twice
    assert after[("mediagate_worker_dead_letters_total", ())] == 1
    assert after[("mediagate_worker_jobs_in_flight", ())] == 0
    # Both jobs were downloaded and scanned; only the clean one was stored.
    assert after[("mediagate_worker_stage_seconds_count", ("download",))] == 2
    assert after[("mediagate_worker_stage_seconds_count", ("scan",))] == 2
    assert after[("mediagate_worker_stage_seconds_count", ("upload",))] == 1
    assert after[("mediagate_worker_stage_seconds_sum", ("scan",))] > 0
