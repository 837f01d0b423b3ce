"""The processing pipeline: one upload from UPLOADED to COMPLETED (or REJECTED / SCAN_FAILED).

Ordered steps, each recorded in the row's status by a conditional update:
  claim (advisory lock) -> accept the upload -> SCANNING: download, scan, check magic
  -> PROCESSING: sanitize -> store the processed copy -> the validation hook's acceptance
  (when configured) -> COMPLETED -> delete the original.
The original is deleted only after the processed copy and the COMPLETED row are durable;
the caller acks the message only after that. Nothing is COMPLETED without a clean scan.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from minio.error import S3Error

from mediagate.config import Settings
from mediagate.db import engine as db_engine
from mediagate.db import locks
from mediagate.db import media_rows as repo
from mediagate.db.media_rows import MediaRecord
from mediagate.domain import keys
from mediagate.domain.audit import Actor
from mediagate.domain.clock import utcnow
from mediagate.domain.media_types import MEDIA_TYPES, MediaKind
from mediagate.domain.status import MediaStatus
from mediagate.outbound.http import OutboundClient
from mediagate.processing.errors import DISK_FULL_ERRNOS, ScratchUnavailable, UnacceptableMedia
from mediagate.processing.images import check_decoding_cost, sanitize_image
from mediagate.processing.isolation import DecoderPool, Limits
from mediagate.processing.sniff import check_file_magic
from mediagate.processing.video import VideoBudget, sanitize_video
from mediagate.scanning.clamav import ClamdScanner, Infected, ScannerUnavailable
from mediagate.services.uploads import upload_problem
from mediagate.storage.object_store import ObjectStore, ObjectTooLarge, is_unreachable
from mediagate.worker.retries import (
    ORPHAN_RETRIES,
    DeadLetter,
    Done,
    JobResult,
    Outcome,
    Retry,
    is_last_attempt,
    park_if_crashing,
)
from mediagate.worker.scratch import job_scratch
from mediagate.worker.validation_hook import HookUnavailable, ValidationHook

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Output:
    path: Path
    content_type: str
    width: int
    height: int
    poster: Path | None = None
    duration_seconds: float | None = None


class _Rejected(Exception):
    """The upload must not be used; the reason is shown to the client."""


class _Infected(_Rejected):
    """The scanner found a virus."""


class _Timings(dict[str, float]):
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - started


@dataclass(slots=True)
class _Job:
    """One upload's job: its row as it moves on, who acts, how long each stage took."""

    record: MediaRecord
    actor: Actor
    timings: _Timings = field(default_factory=_Timings)

    async def move(self, target: MediaStatus) -> MediaRecord:
        moved = await repo.transition(self.record.id, target, actor=self.actor)
        if moved is None:
            raise RuntimeError(
                f"{self.record.id} could not move from {self.record.status} to {target}"
            )
        self.record = moved
        return moved


class MediaPipeline:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        scanner: ClamdScanner,
        decoders: DecoderPool,
        outbound: OutboundClient | None = None,
        clock: Callable[[], datetime] = utcnow,
        scratch_root: Path | None = None,
    ) -> None:
        self._settings = settings
        self._hook = (
            ValidationHook(settings, outbound, store, clock)
            if settings.validation_hook.url is not None and outbound is not None
            else None
        )
        self._store = store
        self._scanner = scanner
        self._decoders = decoders
        self._image_limits = Limits(
            settings.image.time_limit,
            settings.image.time_limit,
            settings.image.memory_limit,
            "the image",
        )
        # ffmpeg stops at the limit its video's duration earns (VideoBudget); this is
        # the backstop. Its threads share one CPU budget: every core for the whole time.
        self._video_limits = Limits(
            settings.video.time_limit_max,
            settings.video.time_limit_max * (os.cpu_count() or 1),
            settings.video.memory_limit,
            "the video",
        )
        self._video_budget = VideoBudget(
            settings.video.time_limit,
            settings.video.time_per_second,
            settings.video.time_limit_max,
            settings.video.max_height,
        )
        self._clock = clock
        self._scratch_root = scratch_root  # None: the system's temp directory

    async def handle(self, file_key: str, attempt: int, redelivered: bool = False) -> Outcome:
        """Process one upload; `attempt` counts earlier tries of the same message, and
        `redelivered` says the broker gave it back after a worker died holding it."""
        last_attempt = is_last_attempt(attempt, self._settings.retry)
        actor = Actor.worker(job_id=uuid.uuid4().hex)
        try:
            async with locks.advisory_lock(file_key) as locked:
                if not locked:
                    return Done("another worker is processing this upload")
                return await self._process(file_key, attempt, redelivered, actor)
        except ScratchUnavailable as error:
            # Another worker or a later try may have the disk: never the file's fault.
            log.warning("scratch space unavailable", extra={"key": file_key, "error": str(error)})
            return Retry(str(error), until_fixed=True)
        except (ScannerUnavailable, HookUnavailable) as error:
            # Neither is a verdict: never COMPLETED without both, so try again later.
            what = "virus scan" if isinstance(error, ScannerUnavailable) else "validation hook"
            log.warning(f"{what} unavailable", extra={"key": file_key, "error": str(error)})
            if not last_attempt:
                return Retry(str(error))
            await self._give_up(file_key, f"{what} unavailable: {error}", actor)
            return Done(
                "scan failed; the original is kept for a rescan", result=JobResult.SCAN_FAILED
            )
        except Exception as error:
            if db_engine.is_unavailable(error) or is_unreachable(error):
                # The database or the store restarts, fails over or is out of reach: not
                # the file's fault, and nothing could be recorded anyway. Tried again for
                # as long as it lasts.
                log.warning(
                    "database or store unavailable", extra={"key": file_key, "error": repr(error)}
                )
                return Retry(repr(error), until_fixed=True)
            log.exception("processing failed", extra={"key": file_key, "attempt": attempt})
            if not last_attempt:
                return Retry(repr(error))
            await self._give_up(
                file_key, "processing failed repeatedly; an operator was alerted", actor
            )
            return DeadLetter(repr(error))

    async def _give_up(self, file_key: str, reason: str, actor: Actor) -> None:
        try:
            record = await repo.find_by_key(file_key)
            if record is not None:
                await repo.transition(
                    record.id, MediaStatus.SCAN_FAILED, actor=actor, rejection_reason=reason
                )
        except Exception:
            log.exception("could not record SCAN_FAILED", extra={"key": file_key})

    async def _process(
        self, file_key: str, attempt: int, redelivered: bool, actor: Actor
    ) -> Outcome:
        record = await repo.find_by_key(file_key)
        if record is None:
            return await self._orphan(file_key, attempt)
        if redelivered and (parked := await self._park_if_it_keeps_crashing(record, actor)):
            return parked
        if record.status in (MediaStatus.COMPLETED, MediaStatus.REJECTED, MediaStatus.DELETED):
            # Finishes a job that died after its commit, or a PUT to a URL whose item was
            # deleted before its file came.
            await self._store.delete(file_key)
            return Done(f"already {record.status.value}")
        if record.status is MediaStatus.SCAN_FAILED:
            return Done("already SCAN_FAILED")
        job = _Job(record, actor)
        try:
            if record.status is MediaStatus.PENDING_UPLOAD and not await self._accept(job):
                return Done("the object is not in storage (yet)")
            return await self._scan_and_sanitize(job)
        except _Rejected as rejection:
            await self._reject(job, str(rejection))
            result = JobResult.VIRUS if isinstance(rejection, _Infected) else JobResult.REJECTED
            return Done(f"rejected: {rejection}", dict(job.timings), result)

    async def _park_if_it_keeps_crashing(
        self, record: MediaRecord, actor: Actor
    ) -> DeadLetter | None:
        """A redelivered message whose job is half-done: its worker died mid-way."""
        if record.status not in (MediaStatus.SCANNING, MediaStatus.PROCESSING):
            return None
        reason = await park_if_crashing(record, actor)
        return None if reason is None else DeadLetter(reason)

    async def _orphan(self, file_key: str, attempt: int) -> Outcome:
        if not keys.is_upload_key(file_key):
            log.warning("event for a key outside the uploads prefix", extra={"key": file_key})
            return Done("not an upload key")
        if attempt < ORPHAN_RETRIES:
            return Retry("no row for this key yet")
        await self._store.delete(file_key)
        log.warning("orphan object deleted: no upload row", extra={"key": file_key})
        return Done("orphan deleted")

    async def _accept(self, job: _Job) -> bool:
        """The bucket event came before confirmUpload: apply confirmUpload's checks here.
        False while the object is not in the store."""
        record = job.record
        stored = await self._store.head(record.file_key)
        if stored is None:
            return False
        reason = upload_problem(self._settings, record, stored)
        if reason is not None:
            log.warning("orphan upload rejected", extra={"key": record.file_key, "reason": reason})
            raise _Rejected(reason)
        moved = await repo.transition(
            record.id,
            MediaStatus.UPLOADED,
            actor=job.actor,
            only_from=MediaStatus.PENDING_UPLOAD,
            file_size=stored.size,
        )
        current = moved or await repo.find_by_key(record.file_key)
        if current is None:
            return False
        job.record = current
        return True

    async def _scan_and_sanitize(self, job: _Job) -> Outcome:
        timings = job.timings
        self._check_scratch_space(job.record)
        with job_scratch(self._scratch_root) as scratch:
            original = scratch / "original"
            record = await job.move(MediaStatus.SCANNING)
            with timings.stage("download"):
                checksum = await self._download(record, original)
            with timings.stage("inspect"):
                await self._check_decoding_cost(record, original)
            # The caged decoder works on the unscanned file while clamd scans it: nothing
            # leaves SCANNING, and nothing is stored, before a clean verdict; any other
            # verdict, or any failure, kills the decoder.
            decoding = asyncio.ensure_future(self._sanitize(record, original, scratch))
            try:
                with timings.stage("scan"):
                    verdict = await asyncio.to_thread(self._scanner.scan_file, original)
                if isinstance(verdict, Infected):
                    raise _Infected(f"virus detected: {verdict.signature}")
                check_file_magic(original, record.content_type)
                record = await job.move(MediaStatus.PROCESSING)
                with timings.stage("process"):
                    output = await decoding
            except UnacceptableMedia as error:
                raise _Rejected(str(error)) from None
            finally:
                decoding.cancel()  # nothing when it is done already
                await asyncio.gather(decoding, return_exceptions=True)
            with timings.stage("upload"):
                final_key, poster_key = await self._store_output(record, output)
            with timings.stage("validate"):
                await self._validate(record, output, final_key, poster_key)
            with timings.stage("database"):
                await self._complete(job, output, final_key, poster_key, checksum)
            with timings.stage("delete_original"):
                await self._store.delete(record.file_key)
        log.info(
            "media processed",
            extra={"media_id": str(record.id), "key": record.file_key, "timings": dict(timings)},
        )
        return Done("completed", dict(timings), JobResult.COMPLETED)

    def _check_scratch_space(self, record: MediaRecord) -> None:
        """Room for the original and its processed copy (at most about as large), with
        the reserve left free; the size is the store's, or the limit if unknown."""
        size = record.file_size or self._max_bytes(record)
        free = shutil.disk_usage(self._scratch_root or tempfile.gettempdir()).free
        needed = 2 * size + self._settings.worker.scratch_reserve_bytes
        if free < needed:
            raise ScratchUnavailable(f"{free} bytes free for scratch, {needed} needed")

    def _max_bytes(self, record: MediaRecord) -> int:
        return self._settings.uploads.max_bytes(MEDIA_TYPES[record.content_type].kind)

    async def _download(self, record: MediaRecord, destination: Path) -> str:
        limit = self._max_bytes(record)
        try:
            download = await self._store.download(record.file_key, destination, limit)
        except ObjectTooLarge:
            raise _Rejected(f"the file is larger than {limit} bytes") from None
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject"):
                raise _Rejected("the uploaded file is no longer in storage") from None
            raise
        except OSError as error:
            if error.errno in DISK_FULL_ERRNOS:
                raise ScratchUnavailable(f"the download could not be written: {error}") from None
            raise
        return download.sha256

    async def _check_decoding_cost(self, record: MediaRecord, original: Path) -> None:
        """Before the scan: a bomb costs neither clamd nor the decoder."""
        if MEDIA_TYPES[record.content_type].kind is not MediaKind.IMAGE:
            return
        try:
            await self._decoders.call(
                check_decoding_cost, (original, record.content_type), self._image_limits
            )
        except UnacceptableMedia as error:
            raise _Rejected(str(error)) from None

    async def _sanitize(self, record: MediaRecord, original: Path, scratch: Path) -> _Output:
        processed = scratch / "processed"
        if MEDIA_TYPES[record.content_type].kind is MediaKind.IMAGE:
            image = await self._decoders.call(
                sanitize_image, (original, record.content_type, processed), self._image_limits
            )
            return _Output(processed, "image/jpeg", image.width, image.height)
        poster = scratch / "poster.jpg"
        video = await self._decoders.call(
            sanitize_video,
            (original, record.content_type, processed, poster, self._video_budget),
            self._video_limits,
        )
        return _Output(
            processed, "video/mp4", video.width, video.height, poster, video.duration_seconds
        )

    async def _store_output(self, record: MediaRecord, output: _Output) -> tuple[str, str | None]:
        metadata = {
            "processed": "true",
            "processed-at": self._clock().isoformat(),
            "original-key": record.file_key,
        }
        final_key = keys.processed_key(record.file_key, keys.output_extension(record.content_type))
        await self._store.upload(final_key, output.path, output.content_type, metadata)
        if output.poster is None:
            return final_key, None
        poster_key = keys.poster_key(record.file_key)
        await self._store.upload(poster_key, output.poster, "image/jpeg", metadata)
        return final_key, poster_key

    async def _validate(
        self, record: MediaRecord, output: _Output, final_key: str, poster_key: str | None
    ) -> None:
        """The hook's acceptance, when one is configured; the stored copy goes unless it
        accepts."""
        if self._hook is None:
            return
        shape = {
            "contentType": output.content_type,
            "fileSize": output.path.stat().st_size,
            "width": output.width,
            "height": output.height,
            "durationSeconds": output.duration_seconds,
        }
        try:
            verdict = await self._hook.ask(record, final_key, poster_key, shape)
        except BaseException:
            await self._delete_outputs(final_key, poster_key)
            raise
        if not verdict.accept:
            await self._delete_outputs(final_key, poster_key)
            raise _Rejected(verdict.reason)

    async def _delete_outputs(self, final_key: str, poster_key: str | None) -> None:
        for key in (final_key, poster_key):
            if key is not None:
                await self._store.delete(key)

    async def _complete(
        self, job: _Job, output: _Output, final_key: str, poster_key: str | None, checksum: str
    ) -> None:
        record = job.record
        completed = await repo.transition(
            record.id,
            MediaStatus.COMPLETED,
            actor=job.actor,
            processed_key=final_key,
            processed_content_type=output.content_type,
            poster_key=poster_key,
            poster_size=None if output.poster is None else output.poster.stat().st_size,
            file_size=output.path.stat().st_size,
            checksum_sha256=checksum,
            width=output.width,
            height=output.height,
            duration_seconds=output.duration_seconds,
            processed_at=self._clock(),
        )
        if completed is None:
            raise RuntimeError(f"{record.id} could not be marked COMPLETED")

    async def _reject(self, job: _Job, reason: str) -> None:
        record = job.record
        rejected = await repo.transition(
            record.id, MediaStatus.REJECTED, actor=job.actor, rejection_reason=reason
        )
        if rejected is not None:
            log.info("media rejected", extra={"media_id": str(record.id), "reason": reason})
        await self._store.delete(record.file_key)
