"""The safety net for lost bucket events, lost jobs and crashes: compares the rows with
the store and with the clock, puts right what can be put right, and reports the rest.

- Rows a worker should have moved on (UPLOADED, SCANNING, PROCESSING untouched for
  `stuck_after`) get their job again, unless a worker holds the upload's lock (a job
  running is never doubled). The row's clock restarts and the audit log says so.
  A row found SCANNING or PROCESSING so means its worker died mid-way (a long job's
  message is acked early, so no redelivery counts it): after MAX_CRASHED_ATTEMPTS it
  is parked as SCAN_FAILED, like a file that keeps killing workers on redelivery.
- PENDING_UPLOAD past its URL's expiry (plus `grace`): with an object, it is processed
  as if its event had come (the worker rejects and deletes one written too late); with
  none, it is closed as REJECTED (a multipart upload is aborted in the store first). A
  final state rather than a removal: a client still polling learns why, and the row
  keeps its history.
- Multipart uploads open in the store under sessions/ for longer than `grace` with no
  PENDING_UPLOAD row are aborted (the store's own stale-upload expiry is the backstop).
- Objects under sessions/ with no row, or whose row is done with its original
  (COMPLETED, REJECTED, DELETED: a PUT through a URL still valid after its item was
  deleted, an upload completed as it was aborted), and under processed/ that no
  COMPLETED row points at, older than `grace`, are deleted and logged.
- COMPLETED rows whose processed copy or poster is missing are reported (log and
  metric) and never "fixed": that is data loss for someone to look at.

The store's listing and the database are walked side by side a page at a time (both in
byte order), so memory does not grow with the bucket.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from mediagate.config import ReconcilerSettings
from mediagate.db import locks, reconciliation, usage_rows
from mediagate.db import media_rows as repo
from mediagate.db.media_rows import MediaRecord
from mediagate.domain import keys
from mediagate.domain.audit import Actor
from mediagate.domain.clock import utcnow
from mediagate.domain.multipart import NEVER_COMPLETED, completion_lock
from mediagate.domain.status import MediaStatus
from mediagate.events.messages import ProcessJob
from mediagate.storage.multipart import MultipartUploads
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.retries import MAX_CRASHED_ATTEMPTS, park_if_crashing

log = logging.getLogger(__name__)

PAGE = 1000
# What one run handles of each kind of row; the next run goes on.
ROWS_PER_RUN = 1000
LOCK_NAME = "mediagate:reconciler"
NEVER_UPLOADED = "no file was uploaded before the upload URL expired"
# Open multipart uploads looked at per run.
OPEN_UPLOADS_PER_RUN = 10_000


class Publisher(Protocol):
    async def publish(self, job: ProcessJob) -> None: ...


@dataclass
class Findings:
    requeued_stuck: list[str] = field(default_factory=list)
    expired_processed: list[str] = field(default_factory=list)
    expired_closed: list[str] = field(default_factory=list)
    crashed_parked: list[str] = field(default_factory=list)
    multipart_aborted: list[str] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    completed_missing_object: list[str] = field(default_factory=list)
    # Organizations whose usage counter was not what the store holds for them.
    usage_corrected: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: len(found) for name, found in vars(self).items()}


@dataclass(frozen=True, slots=True)
class Bounds:
    stuck_after: timedelta
    grace: timedelta

    @classmethod
    def of(cls, settings: ReconcilerSettings) -> Bounds:
        return cls(timedelta(seconds=settings.stuck_after), timedelta(seconds=settings.grace))


class Reconciler:
    def __init__(
        self,
        store: ObjectStore,
        publisher: Publisher | None,
        bounds: Bounds,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._multipart = MultipartUploads(store)
        self._publisher = publisher  # None: a dry run, which changes nothing
        self._bounds = bounds
        self._clock = clock
        self._actor = Actor.worker(job_id=f"reconcile-{uuid.uuid4().hex[:12]}")

    @property
    def _dry(self) -> bool:
        return self._publisher is None

    async def run(self) -> Findings:
        findings = Findings()
        now = self._clock()
        await self._requeue_stuck(now, findings)
        await self._settle_expired(now, findings)
        await self._sweep_uploads(now, findings)
        await self._sweep_multipart(now, findings)
        await self._sweep_outputs(now, findings)
        await self._correct_usage(findings)
        self._report(findings)
        return findings

    async def _requeue_stuck(self, now: datetime, findings: Findings) -> None:
        for record in await reconciliation.stuck_in_flight(
            now - self._bounds.stuck_after, ROWS_PER_RUN
        ):
            async with locks.advisory_lock(record.file_key) as free:
                if not free:
                    continue  # its job is running right now
            if record.status is not MediaStatus.UPLOADED and await self._park_if_crashing(record):
                findings.crashed_parked.append(record.file_key)
                continue
            findings.requeued_stuck.append(record.file_key)
            await self._queue(record.id, record.file_key, record.session_id)

    async def _park_if_crashing(self, record: MediaRecord) -> bool:
        if self._dry:
            return record.crashed_attempts + 1 >= MAX_CRASHED_ATTEMPTS
        return await park_if_crashing(record, self._actor) is not None

    async def _settle_expired(self, now: datetime, findings: Findings) -> None:
        for record in await reconciliation.expired_pending(now - self._bounds.grace, ROWS_PER_RUN):
            async with locks.advisory_lock(completion_lock(record.file_key)) as free:
                if free:  # else a client is completing or aborting it right now
                    await self._settle(record, findings)

    async def _settle(self, record: MediaRecord, findings: Findings) -> None:
        """An expired PENDING_UPLOAD row: processed if its file came, else closed."""
        if await self._store.head(record.file_key) is not None:
            findings.expired_processed.append(record.file_key)
            await self._queue(record.id, record.file_key, record.session_id)
            return
        findings.expired_closed.append(record.file_key)
        if self._dry:
            return
        if record.upload_id is not None:
            await self._multipart.abort(record.file_key, record.upload_id)
        await repo.transition(
            record.id,
            MediaStatus.REJECTED,
            actor=self._actor,
            only_from=MediaStatus.PENDING_UPLOAD,
            rejection_reason=NEVER_COMPLETED if record.multipart else NEVER_UPLOADED,
        )

    async def _queue(self, media_id: uuid.UUID, file_key: str, session_id: uuid.UUID) -> None:
        if self._publisher is None:
            return
        await self._publisher.publish(ProcessJob(media_id, file_key, session_id))
        await reconciliation.mark_requeued(media_id, self._actor)

    async def _sweep_uploads(self, now: datetime, findings: Findings) -> None:
        """Objects under sessions/ that no row needs."""
        after = ""
        while page := await self._store.list_page(keys.UPLOADS_PREFIX, after, PAGE):
            after = page[-1][0]
            needed = await reconciliation.upload_keys_needed([key for key, _ in page])
            for key, modified in page:
                if key not in needed and modified < now - self._bounds.grace:
                    await self._delete_orphan(key, findings)

    async def _sweep_multipart(self, now: datetime, findings: Findings) -> None:
        """Multipart uploads in the store that no open row knows (a start whose row was
        never written, a row closed while its abort failed)."""
        uploads = await self._multipart.open_uploads(keys.UPLOADS_PREFIX, OPEN_UPLOADS_PER_RUN)
        stale = [
            upload
            for upload in uploads
            if upload.initiated is None or upload.initiated < now - self._bounds.grace
        ]
        if not stale:
            return
        wanted = await reconciliation.pending_upload_ids([upload.upload_id for upload in stale])
        for upload in stale:
            if upload.upload_id in wanted:
                continue
            findings.multipart_aborted.append(upload.key)
            if not self._dry:
                await self._multipart.abort(upload.key, upload.upload_id)
                log.warning("orphan multipart upload aborted", extra={"key": upload.key})

    async def _sweep_outputs(self, now: datetime, findings: Findings) -> None:
        """Objects under processed/ against COMPLETED rows' outputs, both in key order:
        an object no row points at is an orphan; a row whose object is not there is
        data loss."""
        objects = _Pages(lambda after: self._store.list_page(keys.PROCESSED_PREFIX, after, PAGE))
        outputs = _Pages(_output_page)
        stored, expected = await objects.next(), await outputs.next()
        while stored is not None or expected is not None:
            if expected is None or (stored is not None and stored[0] < expected[0]):
                assert stored is not None
                key, modified = stored
                if modified < now - self._bounds.grace:
                    await self._delete_orphan(key, findings)
                stored = await objects.next()
            elif stored is None or expected[0] < stored[0]:
                findings.completed_missing_object.append(expected[0])
                expected = await outputs.next()
            else:
                stored, expected = await objects.next(), await outputs.next()

    async def _correct_usage(self, findings: Findings) -> None:
        """Each organization's usage counter against the store's listing of what its
        rows hold (orphans, swept above, are no one's), plus its reservations."""
        listed_from = await reconciliation.database_now()
        stored: dict[uuid.UUID, int] = {}
        for prefix, owned in (
            (keys.UPLOADS_PREFIX, usage_rows.stored_bytes_of_uploads),
            (keys.PROCESSED_PREFIX, usage_rows.stored_bytes_of_outputs),
        ):
            after = ""
            while page := await self._store.list_sizes(prefix, after, PAGE):
                after = page[-1][0]
                for organization, size in (await owned(page)).items():
                    stored[organization] = stored.get(organization, 0) + size
        for drift in await usage_rows.correct(stored, listed_from, apply=not self._dry):
            findings.usage_corrected.append(str(drift.organization_id))
            log.warning(
                "organization usage drifted from the store",
                extra={
                    "organization": str(drift.organization_id),
                    "counted": drift.counted,
                    "actual": drift.actual,
                },
            )

    async def _delete_orphan(self, key: str, findings: Findings) -> None:
        findings.orphans_deleted.append(key)
        if not self._dry:
            await self._store.delete(key)
            log.warning("orphan object deleted", extra={"key": key})

    def _report(self, findings: Findings) -> None:
        for key in findings.completed_missing_object[:100]:
            log.error("COMPLETED media whose object is missing", extra={"key": key})
        log.info("reconciled", extra={"dry_run": self._dry, **findings.counts()})


async def _output_page(after: str) -> list[tuple[str, Any]]:
    return [(key, None) for key in await reconciliation.completed_outputs_after(after, PAGE)]


class _Pages:
    """One item at a time from a paged source ordered by key: `fetch(after)` gives the
    next page of (key, extra) after the key `after`; an empty page ends it."""

    def __init__(self, fetch: Callable[[str], Awaitable[list[tuple[str, Any]]]]) -> None:
        self._fetch = fetch
        self._page: list[tuple[str, Any]] = []
        self._after = ""
        self._done = False

    async def next(self) -> tuple[str, Any] | None:
        if not self._page and not self._done:
            self._page = await self._fetch(self._after)
            self._done = not self._page
            if self._page:
                self._after = self._page[-1][0]
                self._page.reverse()
        return self._page.pop() if self._page else None
