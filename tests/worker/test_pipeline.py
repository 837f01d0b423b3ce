"""The processing pipeline against real PostgreSQL, clamd, ffmpeg and the S3 server."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mediagate.config import Settings
from mediagate.domain.status import MediaStatus
from mediagate.processing.isolation import DecoderPool, Limits
from mediagate.scanning.clamav import ClamdScanner
from mediagate.services.uploads import UploadService
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.retries import Done, Retry
from tests.support import daemons, media
from tests.support.api import Tenant, graphql
from tests.support.flow import MEDIA, confirm, drain_jobs, put_object
from tests.support.readback import object_bytes, row, stage


@pytest.fixture(autouse=True)
def _scratch_is_cleaned(scratch_root: Path) -> Iterator[None]:
    yield
    assert list(scratch_root.iterdir()) == [], "every job removes its scratch directory"


@pytest.fixture
def unscanned(
    settings: Settings, store: ObjectStore, decoders: DecoderPool, scratch_root: Path
) -> MediaPipeline:
    """A pipeline whose clamd never answers (nothing listens on its port)."""
    scanner = ClamdScanner("127.0.0.1", daemons.free_port(), 1)
    return MediaPipeline(settings, store, scanner, decoders, scratch_root=scratch_root)


async def _assert_rejected(store: ObjectStore, key: str, fragment: str) -> None:
    record = await row(key)
    assert record.status is MediaStatus.REJECTED, record
    assert record.rejection_reason is not None and fragment in record.rejection_reason
    assert record.processed_key is None
    assert await store.head(key) is None, "the original is deleted"
    assert not _has_processed_copy(store, key)


def _has_processed_copy(store: ObjectStore, key: str) -> bool:
    listed = store.client.list_objects(store.bucket, prefix="processed/", recursive=True)
    return any(key.split("/")[-1].split(".")[0] in (o.object_name or "") for o in listed)


async def test_a_photo_is_scanned_sanitized_and_completed(
    api: httpx.AsyncClient, tenant: Tenant, pipeline: MediaPipeline, store: ObjectStore
) -> None:
    key = await stage(api, tenant, media.fixture("HMD_Nokia_8.3_5G.jpg"), "phone.jpg", "image/jpeg")
    outcome = await pipeline.handle(key, attempt=0)
    assert isinstance(outcome, Done) and outcome.note == "completed"
    assert set(outcome.timings) >= {"download", "scan", "process", "upload", "database"}

    record = await row(key)
    assert record.status is MediaStatus.COMPLETED
    assert record.processed_key == "processed/" + key.removeprefix("sessions/")
    assert (record.width, record.height) == (4608, 1976)
    assert record.checksum_sha256 is not None and len(record.checksum_sha256) == 64
    assert record.processed_at is not None
    assert await store.head(key) is None, "the original is gone once the copy is durable"

    data, headers = await object_bytes(store, record.processed_key)
    assert record.file_size == len(data)
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["x-amz-meta-processed"] == "true"
    assert headers["x-amz-meta-original-key"] == key
    assert b"Exif\x00\x00" not in data and b"GPS" not in data

    body = await graphql(api, MEDIA, {"id": str(record.id)}, tenant.token)
    url = body["data"]["media"]["url"]
    async with httpx.AsyncClient() as client:
        served = await client.get(url)
    assert served.status_code == 200 and served.content == data


async def test_exif_gps_and_xmp_are_gone_and_orientation_is_applied(
    api: httpx.AsyncClient, tenant: Tenant, pipeline: MediaPipeline, store: ObjectStore
) -> None:
    key = await stage(api, tenant, media.fixture("landscape_6.jpg"), "l6.jpg", "image/jpeg")
    xmp_key = await stage(api, tenant, media.fixture("BlueSquare.jpg"), "xmp.jpg", "image/jpeg")
    for k in (key, xmp_key):
        assert isinstance(await pipeline.handle(k, 0), Done)
    rotated = await row(key)
    # Stored as 450x600 with orientation 6; displayed (and now stored) as 600x450.
    assert (rotated.width, rotated.height) == (600, 450)
    for record in (rotated, await row(xmp_key)):
        assert record.processed_key is not None
        data, _ = await object_bytes(store, record.processed_key)
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG"
            assert not image.getexif()
            assert not {"exif", "xmp", "icc_profile", "comment", "photoshop"} & set(image.info)
        assert b"http://ns.adobe.com/xap" not in data and b"Exif" not in data


async def test_eicar_is_caught_and_deleted(
    api: httpx.AsyncClient, tenant: Tenant, pipeline: MediaPipeline, store: ObjectStore
) -> None:
    key = await stage(api, tenant, media.eicar(), "virus.jpg", "image/jpeg")
    outcome = await pipeline.handle(key, 0)
    assert isinstance(outcome, Done) and outcome.result == "virus"
    assert outcome.note == "rejected: virus detected: Eicar-Test-Signature.UNOFFICIAL"
    assert outcome.timings["scan"] > 0  # the scan happened, and is measured
    await _assert_rejected(store, key, "virus detected: Eicar-Test-Signature")


async def test_eicar_inside_a_zip_is_caught(
    api: httpx.AsyncClient, tenant: Tenant, pipeline: MediaPipeline, store: ObjectStore
) -> None:
    key = await stage(api, tenant, media.zipped("readme.txt", media.eicar()), "a.jpg", "image/jpeg")
    await pipeline.handle(key, 0)
    await _assert_rejected(store, key, "virus detected")


# Twice clamd's 25 MB default stream limit.
FIFTY_MIB = 50 * 1024 * 1024

HLS_PLAYLIST = (
    b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
)


@pytest.mark.parametrize(
    ("data", "filename", "content_type", "reason"),
    [
        (
            media.fixture("landscape_1.jpg")[:2000] + b"\x00" * 100,
            "broken.jpg",
            "image/jpeg",
            "corrupt",
        ),
        (media.image_bytes("PNG"), "fake.jpg", "image/jpeg", "not image/jpeg"),
        # Rejected before ffmpeg could follow the playlist to a file on the host.
        (HLS_PLAYLIST, "clip.mp4", "video/mp4", "not video/mp4"),
    ],
    ids=["corrupt-image", "png-bytes-as-jpeg", "hls-playlist-as-mp4"],
)
async def test_bad_content_is_rejected_with_a_reason_and_no_output(
    api: httpx.AsyncClient,
    tenant: Tenant,
    pipeline: MediaPipeline,
    store: ObjectStore,
    data: bytes,
    filename: str,
    content_type: str,
    reason: str,
) -> None:
    key = await stage(api, tenant, data, filename, content_type)
    await pipeline.handle(key, 0)
    await _assert_rejected(store, key, reason)


async def test_png_with_alpha_is_flattened_to_jpeg(
    api: httpx.AsyncClient, tenant: Tenant, pipeline: MediaPipeline, store: ObjectStore
) -> None:
    key = await stage(
        api, tenant, media.image_bytes("PNG", (40, 30), "RGBA"), "logo.png", "image/png"
    )
    await pipeline.handle(key, 0)
    record = await row(key)
    assert record.status is MediaStatus.COMPLETED and record.processed_key is not None
    assert record.processed_key.endswith(".jpg")
    data, _ = await object_bytes(store, record.processed_key)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGB" and image.size == (40, 30)
        red, green, _blue = image.getpixel((20, 15))  # type: ignore[misc]
        assert red > 200 and green > 100, "half-transparent red over white is pink"


async def test_h264_video_is_remuxed_with_poster_and_no_metadata(
    api: httpx.AsyncClient,
    tenant: Tenant,
    pipeline: MediaPipeline,
    store: ObjectStore,
    tmp_path: Path,
) -> None:
    clip = media.make_video(
        tmp_path / "in.mp4",
        extra=["-metadata", "location=+48.8584+002.2945/", "-metadata", "title=secret"],
    )
    key = await stage(api, tenant, clip.read_bytes(), "clip.mp4", "video/mp4")
    await pipeline.handle(key, 0)
    record = await row(key)
    assert record.status is MediaStatus.COMPLETED
    assert (record.width, record.height) == (320, 240)
    assert record.duration_seconds is not None and abs(record.duration_seconds - 2) < 0.2
    assert record.processed_key is not None and record.processed_key.endswith(".mp4")
    assert record.poster_key is not None
    data, headers = await object_bytes(store, record.processed_key)
    assert headers["Content-Type"] == "video/mp4"
    assert b"secret" not in data and b"48.8584" not in data
    assert data.index(b"moov") < data.index(b"mdat"), "faststart puts the index first"
    poster, _ = await object_bytes(store, record.poster_key)
    with Image.open(io.BytesIO(poster)) as image:
        assert image.format == "JPEG" and image.size == (320, 240)


async def test_webm_is_transcoded_to_h264_mp4(
    api: httpx.AsyncClient,
    tenant: Tenant,
    pipeline: MediaPipeline,
    store: ObjectStore,
    tmp_path: Path,
) -> None:
    clip = media.make_video(
        tmp_path / "in.webm",
        size="322x242",
        video=["-c:v", "libvpx-vp9", "-b:v", "200k"],
        audio=False,
    )
    key = await stage(api, tenant, clip.read_bytes(), "clip.webm", "video/webm")
    await pipeline.handle(key, 0)
    record = await row(key)
    assert record.status is MediaStatus.COMPLETED
    assert record.processed_key is not None
    data, _ = await object_bytes(store, record.processed_key)
    probe = tmp_path / "out.mp4"
    probe.write_bytes(data)
    from mediagate.processing.video import probe as ffprobe

    found = ffprobe(probe, "video/mp4")
    assert found.video_codec == "h264" and (found.width, found.height) == (322, 242)


async def test_fifty_megabyte_video_is_scanned_whole_and_processed(
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    pipeline: MediaPipeline,
    tmp_path: Path,
) -> None:
    clip = media.noise_video(tmp_path / "big.mp4", FIFTY_MIB - 1_000_000)
    size = clip.stat().st_size
    assert 40_000_000 < size <= FIFTY_MIB, size
    key = await stage(api, tenant, clip.read_bytes(), "big.mp4", "video/mp4")
    await pipeline.handle(key, 0)
    record = await row(key)
    assert record.status is MediaStatus.COMPLETED, record.rejection_reason


async def test_fifty_megabytes_of_random_bytes_as_video_are_scanned_to_the_end(
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    pipeline: MediaPipeline,
    store: ObjectStore,
) -> None:
    noise = bytearray(uuid.uuid4().bytes * (FIFTY_MIB // 16))
    clean_key = await stage(api, tenant, bytes(noise), "noise.mp4", "video/mp4")
    # The same noise with EICAR at 40 MB: found only if clamd reads past its 25 MB default.
    noise[40_000_000 : 40_000_000 + 68] = media.eicar()
    infected_key = await stage(api, tenant, bytes(noise), "noise2.mp4", "video/mp4")
    await pipeline.handle(clean_key, 0)
    await pipeline.handle(infected_key, 0)
    await _assert_rejected(store, clean_key, "not video/mp4")
    await _assert_rejected(store, infected_key, "virus detected")


async def test_scanner_down_fails_closed_then_recovers(
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    pipeline: MediaPipeline,
    store: ObjectStore,
    clamd: daemons.Clamd,
) -> None:
    image = media.fixture("landscape_1.jpg")
    key = await stage(api, tenant, image, "a.jpg", "image/jpeg")
    clamd.stop()
    try:
        first = await pipeline.handle(key, 0)
        assert isinstance(first, Retry) and "clamd" in first.reason
        assert (await row(key)).status is MediaStatus.SCANNING
        last = await pipeline.handle(key, len(settings.retry.delays_ms))
        assert isinstance(last, Done)
    finally:
        clamd.start()
    record = await row(key)
    assert record.status is MediaStatus.SCAN_FAILED
    assert record.rejection_reason is not None and "scan unavailable" in record.rejection_reason
    assert await store.head(key) is not None, "kept for a rescan"
    assert await pipeline.handle(key, 0) == Done("already SCAN_FAILED")

    after = await stage(api, tenant, image, "b.jpg", "image/jpeg")
    await pipeline.handle(after, 0)
    assert (await row(after)).status is MediaStatus.COMPLETED


async def test_event_before_confirm_processes_and_confirm_then_only_records_alt(
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    pipeline: MediaPipeline,
) -> None:
    key = await stage(
        api, tenant, media.fixture("landscape_2.jpg"), "a.jpg", "image/jpeg", confirmed=False
    )
    await drain_jobs(settings)
    await pipeline.handle(key, 0)
    assert (await row(key)).status is MediaStatus.COMPLETED
    body = await confirm(api, tenant, key, alt="left door")
    result = body["data"]["confirmUpload"]
    assert result["status"] == "COMPLETED" and result["alt"] == "left door"
    assert await drain_jobs(settings) == [], "nothing left to queue"
    again = await confirm(api, tenant, key, alt="changed")
    assert again["data"]["confirmUpload"]["alt"] == "left door"


async def test_duplicates_and_concurrent_handling_produce_one_result(
    api: httpx.AsyncClient, tenant: Tenant, pipeline: MediaPipeline, store: ObjectStore
) -> None:
    key = await stage(api, tenant, media.fixture("landscape_3.jpg"), "a.jpg", "image/jpeg")
    outcomes = await asyncio.gather(*(pipeline.handle(key, 0) for _ in range(4)))
    notes = sorted(o.note for o in outcomes if isinstance(o, Done))
    assert len(notes) == 4
    assert notes.count("completed") == 1, notes
    assert await pipeline.handle(key, 0) == Done("already COMPLETED")
    record = await row(key)
    assert record.status is MediaStatus.COMPLETED
    listed = list(store.client.list_objects(store.bucket, prefix="processed/", recursive=True))
    assert sum(record.processed_key == o.object_name for o in listed) == 1


async def test_orphan_object_is_retried_then_deleted(
    pipeline: MediaPipeline, store: ObjectStore, tmp_path: Path
) -> None:
    key = f"sessions/{uuid.uuid4()}/general/{uuid.uuid4()}.jpg"
    source = tmp_path / "orphan.jpg"
    source.write_bytes(media.image_bytes("JPEG"))
    await store.upload(key, source, "image/jpeg", {})
    assert isinstance(await pipeline.handle(key, 0), Retry), "the row may not be visible yet"
    assert await pipeline.handle(key, 2) == Done("orphan deleted")
    assert await store.head(key) is None
    assert await pipeline.handle("processed/x.jpg", 5) == Done("not an upload key")


async def test_event_for_an_upload_written_after_expiry_deletes_it(
    settings: Settings,
    store: ObjectStore,
    tenant: Tenant,
    pipeline: MediaPipeline,
    database: None,
) -> None:
    class NoJobs:
        async def publish(self, job: object) -> None:
            raise AssertionError("not confirmed")

    issued = datetime.now(UTC) - timedelta(hours=1)
    uploads = UploadService(settings, store, NoJobs(), clock=lambda: issued)
    ticket = await uploads.request_upload(
        tenant.principal, tenant.session_id, "a.jpg", "image/jpeg", None, "test"
    )
    await put_object(ticket.upload_url, media.image_bytes("JPEG"), "image/jpeg")
    await pipeline.handle(ticket.file_key, 0)
    await _assert_rejected(store, ticket.file_key, "expired")


async def test_operator_requeues_scan_failed_uploads(
    api: httpx.AsyncClient,
    env: dict[str, str],
    settings: Settings,
    tenant: Tenant,
    store: ObjectStore,
    pipeline: MediaPipeline,
    scratch_root: Path,
    decoders: DecoderPool,
) -> None:
    import os
    import subprocess
    import sys

    from mediagate.scanning.clamav import ClamdScanner

    key = await stage(api, tenant, media.fixture("landscape_7.jpg"), "a.jpg", "image/jpeg")
    await drain_jobs(settings)
    scanner_down = ClamdScanner("127.0.0.1", daemons.free_port(), 1)
    outage = MediaPipeline(settings, store, scanner_down, decoders, scratch_root=scratch_root)
    await outage.handle(key, len(settings.retry.delays_ms))
    assert (await row(key)).status is MediaStatus.SCAN_FAILED

    result = subprocess.run(
        [sys.executable, "-m", "mediagate.cli", "requeue-failed"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 1
    requeued = await row(key)
    assert requeued.status is MediaStatus.UPLOADED and requeued.rejection_reason is None
    assert key in [job["fileKey"] for job in await drain_jobs(settings)]
    await pipeline.handle(key, 0)
    assert (await row(key)).status is MediaStatus.COMPLETED


async def test_monitoring_counts_viruses_and_processing_time(
    api: httpx.AsyncClient, tenant: Tenant, pipeline: MediaPipeline
) -> None:
    from mediagate.db import stats

    before = await stats.viruses_found()
    virus = await stage(api, tenant, media.eicar(), "v.jpg", "image/jpeg")
    clean = await stage(api, tenant, media.fixture("landscape_8.jpg"), "c.jpg", "image/jpeg")
    await pipeline.handle(virus, 0)
    await pipeline.handle(clean, 0)
    assert await stats.viruses_found() == before + 1
    quantiles = await stats.processing_seconds(timedelta(hours=1))
    assert set(quantiles) == {0.5, 0.95, 0.99}
    assert 0 < quantiles[0.5] <= quantiles[0.95] <= quantiles[0.99] < 3600


async def test_a_file_that_keeps_killing_workers_is_parked(
    api: httpx.AsyncClient, tenant: Tenant, store: ObjectStore, unscanned: MediaPipeline
) -> None:
    """Redelivered with the job half-done means the worker died; the third time, stop."""
    from mediagate.worker.retries import MAX_CRASHED_ATTEMPTS, DeadLetter

    key = await stage(api, tenant, media.fixture("landscape_2.jpg"), "a.jpg", "image/jpeg")
    # A scanner that never answers leaves the job half-done (SCANNING), as a crash would.
    assert isinstance(await unscanned.handle(key, 0), Retry)
    # The decoder had the file while the scan was pending, yet nothing left SCANNING.
    assert (await row(key)).processed_key is None and not _has_processed_copy(store, key)
    for crash in range(1, MAX_CRASHED_ATTEMPTS):
        assert isinstance(await unscanned.handle(key, 0, redelivered=True), Retry)
        assert (await row(key)).crashed_attempts == crash
    parked = await unscanned.handle(key, 0, redelivered=True)
    assert isinstance(parked, DeadLetter) and "stopped 3 times" in parked.reason
    record = await row(key)
    assert record.status is MediaStatus.SCAN_FAILED
    assert await store.head(key) is not None, "kept for review"


@pytest.mark.parametrize(
    ("data", "filename", "content_type", "reason"),
    [
        (media.progressive_jpeg((400, 300), extra_scans=300), "s.jpg", "image/jpeg", "scans"),
        (media.png_bomb(), "b.png", "image/png", "limit is 60000000"),
        (media.declaring("PNG", (20_000, 20_000)), "c.png", "image/png", "limit is 60000000"),
        (media.declaring("JPEG", (65_535, 65_535)), "d.jpg", "image/jpeg", "limit is 60000000"),
    ],
    ids=["jpeg-of-300-scans", "png-bomb", "past-pillows-threshold", "jpeg-maximum"],
)
async def test_costly_images_are_refused_from_their_headers_before_the_scan(
    api: httpx.AsyncClient,
    tenant: Tenant,
    store: ObjectStore,
    unscanned: MediaPipeline,
    data: bytes,
    filename: str,
    content_type: str,
    reason: str,
) -> None:
    key = await stage(api, tenant, data, filename, content_type)
    # No scanner answers here: had the scan come first, this would be a Retry.
    assert isinstance(await unscanned.handle(key, 0), Done)
    await _assert_rejected(store, key, reason)


async def test_an_image_that_decodes_too_long_is_rejected_and_the_worker_goes_on(
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    store: ObjectStore,
    scratch_root: Path,
    decoders: DecoderPool,
    clamd: daemons.Clamd,
) -> None:
    # 49 MP, within the pixel and scan limits: only its decoding time is too much for
    # a limit of a fifth of a second.
    slow = await stage(api, tenant, media.progressive_jpeg((7000, 7000)), "a.jpg", "image/jpeg")
    fine = await stage(api, tenant, media.fixture("landscape_3.jpg"), "b.jpg", "image/jpeg")
    hurried = MediaPipeline(
        replace(settings, image=replace(settings.image, time_limit=0.2)),
        store,
        ClamdScanner(settings.scanner.host, settings.scanner.port, settings.scanner.timeout),
        decoders,
        scratch_root=scratch_root,
    )
    assert isinstance(await hurried.handle(slow, 0), Done)
    await _assert_rejected(store, slow, "the image takes too long to decode")
    assert isinstance(await hurried.handle(fine, 0), Done)
    assert (await row(fine)).status is MediaStatus.COMPLETED


async def test_an_infected_verdict_kills_the_decoder_working_on_the_file(
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    store: ObjectStore,
    clamd: daemons.Clamd,
    scratch_root: Path,
) -> None:
    """Scan and decode run at once; the verdict comes first and ends the decoding."""
    # 49 MP, seconds to decode; the signature sits in a comment segment after SOI.
    picture = media.progressive_jpeg((7000, 7000))
    comment = b"\xff\xfe" + (len(media.eicar()) + 2).to_bytes(2, "big") + media.eicar()
    key = await stage(api, tenant, picture[:2] + comment + picture[2:], "a.jpg", "image/jpeg")
    own = DecoderPool(1)
    limits = Limits(60, 60, 2 * 1024**3)
    try:
        decoder_before = await own.call(os.getpid, (), limits)
        scanner = ClamdScanner(settings.scanner.host, settings.scanner.port, 30)
        pipeline = MediaPipeline(settings, store, scanner, own, scratch_root=scratch_root)
        assert isinstance(await pipeline.handle(key, 0), Done)
        await _assert_rejected(store, key, "virus detected")
        assert await own.call(os.getpid, (), limits) != decoder_before, "killed mid-decode"
    finally:
        own.close()
