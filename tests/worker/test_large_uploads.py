"""Large videos end to end: a 300 MiB upload in parts (one dropped and sent again) to
COMPLETED, a 1.5 GiB one through a worker process in flat memory, and what the worker
does when its disk is short."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import resource
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mediagate.config import Settings
from mediagate.db import media_rows as repo
from mediagate.db import session_rows
from mediagate.domain.audit import Actor
from mediagate.domain.multipart import Part
from mediagate.domain.status import MediaStatus
from mediagate.events.publisher import JobPublisher
from mediagate.processing.isolation import DecoderPool
from mediagate.scanning.clamav import ClamdScanner
from mediagate.services.uploads import queue_for_processing
from mediagate.storage.multipart import MultipartUploads
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.retries import Retry
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.flow import drain_jobs
from tests.support.multipart import (
    COMPLETE,
    call,
    completed,
    put_part_retrying,
    read_part,
    start,
)
from tests.support.readback import row, stage
from tests.support.rows import unbounded
from tests.support.worker_process import WorkerProcess, wait_for_status

MIB = 1024 * 1024


async def _upload_in_parts(
    api: httpx.AsyncClient, tenant: Tenant, source: Path, *, drop: int | None = None
) -> dict[str, Any]:
    """The client: start, PUT every part (part `drop` loses its connection once and is
    sent again), complete. Returns the ticket."""
    body = await start(api, tenant, source.stat().st_size)  # noqa: ASYNC240 - a stat
    ticket: dict[str, Any] = body["data"]["startMultipartUpload"]
    etags = {
        part["partNumber"]: await put_part_retrying(
            part["url"],
            read_part(source, part["partNumber"], ticket["partSize"]),
            fail_first=part["partNumber"] == drop,
        )
        for part in ticket["parts"]
    }
    done = await call(api, tenant, COMPLETE, ticket, parts=completed(etags), alt="car")
    assert done["data"]["completeMultipartUpload"]["status"] == "UPLOADED", done
    return ticket


async def test_a_300_mib_video_in_parts_with_one_dropped_part_ends_completed(
    api: httpx.AsyncClient,
    settings: Settings,
    store: ObjectStore,
    tenant: Tenant,
    pipeline: MediaPipeline,
    tmp_path: Path,
) -> None:
    source = media.padded_video(tmp_path / "walkaround.mp4", 300 * MIB)
    ticket = await _upload_in_parts(api, tenant, source, drop=7)
    assert ticket["partCount"] == 19
    await drain_jobs(settings)
    key = ticket["fileKey"]
    assert (await store.head(key)).size == 300 * MIB  # type: ignore[union-attr]

    await pipeline.handle(key, 0)

    record = await row(key)
    assert record.status is MediaStatus.COMPLETED, record.rejection_reason
    assert record.processed_key is not None and await store.head(record.processed_key)
    assert await store.head(key) is None, "the original is deleted"
    assert record.width == 320 and record.height == 240


async def test_a_multipart_upload_completed_after_its_urls_expired_is_not_rejected(
    api: httpx.AsyncClient,
    store: ObjectStore,
    tenant: Tenant,
    pipeline: MediaPipeline,
    tmp_path: Path,
) -> None:
    """The bucket event comes first, and the parts took longer than the URLs' life: the
    service itself completed the upload, so when the object appeared proves nothing."""
    source = media.padded_video(tmp_path / "slow.mp4", 6 * MIB)
    body = await start(api, tenant, 6 * MIB)
    ticket = body["data"]["startMultipartUpload"]
    etag = await put_part_retrying(ticket["parts"][0]["url"], source.read_bytes())
    await MultipartUploads(store).complete(ticket["fileKey"], ticket["uploadId"], [Part(1, etag)])
    record = await row(ticket["fileKey"])
    await repo.extend_upload_window(record.id, datetime.now(UTC) - timedelta(hours=1))

    await pipeline.handle(ticket["fileKey"], 0)

    assert (await row(ticket["fileKey"])).status is MediaStatus.COMPLETED


def _decoder_on_a_full_disk() -> None:
    """Run in the decoder process: its writes stop short past 64 KiB, then fail, as on a
    disk that fills up (the worker's own download is not limited)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))


@contextlib.contextmanager
def _this_process_on_a_full_disk() -> Iterator[None]:
    """Writes of this process past 1 MiB fail: the download's (a 2 MiB photo), as nothing
    else of the test writes that much while it holds."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (MIB, limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)


@pytest.mark.parametrize(
    ("short_at", "reason"),
    [
        ("the check before the download", "free for scratch"),
        ("the download", "the download could not be written"),
        ("the processed copy", "the processed copy could not be written"),
    ],
)
async def test_a_short_scratch_disk_is_retried_until_fixed_never_rejected(
    api: httpx.AsyncClient,
    settings: Settings,
    store: ObjectStore,
    tenant: Tenant,
    clamd: daemons.Clamd,
    decoders: DecoderPool,
    scratch_root: Path,
    short_at: str,
    reason: str,
) -> None:
    key = await stage(api, tenant, media.fixture("HMD_Nokia_8.3_5G.jpg"), "a.jpg", "image/jpeg")
    await drain_jobs(settings)
    scanner = ClamdScanner(settings.scanner.host, settings.scanner.port, settings.scanner.timeout)
    last_attempt = len(settings.retry.delays_ms)
    no_room = dataclasses.replace(
        settings, worker=dataclasses.replace(settings.worker, scratch_reserve_bytes=2**62)
    )
    decoder_fills_disk = short_at == "the processed copy"
    full_disk = DecoderPool(1, initializer=_decoder_on_a_full_disk if decoder_fills_disk else None)
    try:
        with (
            _this_process_on_a_full_disk()
            if short_at == "the download"
            else contextlib.nullcontext()
        ):
            outcome = await MediaPipeline(
                no_room if short_at == "the check before the download" else settings,
                store,
                scanner,
                full_disk,
                scratch_root=scratch_root,
            ).handle(key, last_attempt)
    finally:
        full_disk.close()

    assert isinstance(outcome, Retry) and outcome.until_fixed, outcome
    assert reason in outcome.reason
    assert (await row(key)).status is not MediaStatus.REJECTED, "not rejected, not given up"
    assert await store.head(key) is not None, "the original is kept"

    outcome = await MediaPipeline(
        settings, store, scanner, decoders, scratch_root=scratch_root
    ).handle(key, last_attempt)

    assert (await row(key)).status is MediaStatus.COMPLETED, outcome


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


def _decoder_pids(worker_pid: int) -> list[int]:
    """The worker's children, whichever of its threads started them."""
    tasks = Path(f"/proc/{worker_pid}/task").iterdir()
    return [int(pid) for task in tasks for pid in (task / "children").read_text().split()]


@pytest.fixture
async def worker(
    env: dict[str, str], settings: Settings, clamd: daemons.Clamd, api: httpx.AsyncClient
) -> AsyncIterator[WorkerProcess]:
    await drain_jobs(settings)
    process = WorkerProcess({**env, "WORKER_PREFETCH": "1"})
    await process.start(settings)
    yield process
    process.stop()


async def _process_with_worker(
    store: ObjectStore, tenant: Tenant, source: Path, settings: Settings
) -> None:
    """Put the file where an upload lands and queue its job, as confirmUpload would."""
    key = f"sessions/{tenant.session_id}/inspection/{source.stem}.mp4"
    size = source.stat().st_size  # noqa: ASYNC240 - a stat
    await session_rows.ensure_user(tenant.principal.user_id, tenant.principal.organization_id)
    record_id = await repo.insert_pending(
        organization_id=tenant.principal.organization_id,
        session_id=tenant.session_id,
        file_key=key,
        original_filename=source.name,
        content_type="video/mp4",
        stage="inspection",
        uploaded_by=tenant.principal.user_id,
        upload_expires_at=datetime.now(UTC) + timedelta(minutes=5),
        bounds=unbounded(settings.uploads.max_session_items),
    )
    assert record_id is not None
    with source.open("rb") as stream:
        store.client.put_object(store.bucket, key, stream, size, content_type="video/mp4")
    publisher = await JobPublisher.connect(settings)
    record = await row(key)
    await queue_for_processing(
        publisher, record, only_from=MediaStatus.PENDING_UPLOAD, actor=Actor.operator("test")
    )
    await publisher.close()
    done = await wait_for_status(key, MediaStatus.COMPLETED, MediaStatus.REJECTED, timeout=600)
    assert done.status is MediaStatus.COMPLETED, done.rejection_reason


async def test_a_1_5_gib_video_goes_through_the_worker_in_flat_memory(
    worker: WorkerProcess, settings: Settings, store: ObjectStore, tenant: Tenant, tmp_path: Path
) -> None:
    """Peak memory (VmHWM) of the worker and its decoders after a 100 MiB video, then
    after a 1.5 GiB one: the larger file adds nothing a file size could explain."""
    assert worker.process is not None
    pids = [worker.process.pid, *_decoder_pids(worker.process.pid)]
    await _process_with_worker(
        store, tenant, media.padded_video(tmp_path / "small.mp4", 100 * MIB), settings
    )
    after_small = {pid: _peak_rss(pid) for pid in pids}

    await _process_with_worker(
        store, tenant, media.padded_video(tmp_path / "large.mp4", 1536 * MIB), settings
    )

    after_large = {pid: _peak_rss(pid) for pid in pids}
    for pid in pids:
        # 15x the input, and not 5% more memory: a copy of it, a part of it, or buffers
        # left to fragment the heap (glibc's moving mmap threshold) would show.
        grown = after_large[pid] - after_small[pid]
        assert grown <= after_small[pid] * 0.05, (pid, after_small, after_large)
