"""Multipart uploads for large files: the browser sends parts through presigned URLs,
the service starts, lists, completes and aborts the upload itself.

The row is created PENDING_UPLOAD like a single PUT's and stays so until the service
has checked the parts and completed the upload; from there on it is confirmUpload.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from minio.error import S3Error

from mediagate.config import Settings
from mediagate.db import locks
from mediagate.db import media_rows as repo
from mediagate.db.media_rows import MediaRecord, MultipartColumns
from mediagate.domain import keys, validation
from mediagate.domain.audit import Actor
from mediagate.domain.multipart import (
    ABORTED,
    MAX_URLS_PER_CALL,
    NEVER_ASSEMBLED,
    Part,
    check_part_numbers,
    completion_lock,
    completion_problem,
    part_count,
    part_length,
    part_size_for,
)
from mediagate.domain.principal import Principal
from mediagate.domain.status import MediaStatus
from mediagate.errors import BadUserInput, ClientError, Conflict, NotFound, ServiceUnavailable
from mediagate.services.media_view import MediaView, to_view
from mediagate.services.sessions import (
    add_pending,
    authorize_session,
    check_size,
    upload_bounds,
)
from mediagate.storage.multipart import MultipartUploads, PartsRefused, UploadGone
from mediagate.storage.object_store import ObjectStore

log = logging.getLogger(__name__)

Confirm = Callable[[Principal, uuid.UUID, str, str | None, str | None, str], Awaitable[MediaView]]


@dataclass(frozen=True, slots=True)
class PartUrl:
    part_number: int
    url: str


@dataclass(frozen=True, slots=True)
class MultipartTicket:
    file_key: str
    upload_id: str
    part_size: int
    part_count: int
    expires_in: int
    # The first MAX_URLS_PER_CALL parts; uploadPartUrls signs the others.
    parts: list[PartUrl]


class MultipartService:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        ensure_user: Callable[[Principal], Awaitable[None]],
        confirm: Confirm,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._store = store
        self._uploads = MultipartUploads(store)
        self._ensure_user = ensure_user
        self._confirm = confirm
        self._clock = clock

    async def start(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        filename: str,
        content_type: str,
        size: int,
        stage: str | None,
        request_id: str,
    ) -> MultipartTicket:
        request = validation.check_upload_request(filename, content_type, stage)
        check_size(self._settings.uploads, request, size)
        await authorize_session(principal, session_id)
        await self._ensure_user(principal)

        file_key = keys.upload_key(session_id, request.stage, request.extension)
        try:
            upload_id = await self._uploads.create(file_key, request.media_type.content_type)
        except S3Error as error:
            log.warning("the store did not start a multipart upload: %r", error)
            raise ServiceUnavailable("the store could not start the upload; try again") from None
        part_size = part_size_for(size, self._settings.uploads.multipart_part_size)
        now = self._clock()
        columns = MultipartColumns(upload_id, size, part_size)
        try:
            await add_pending(
                principal,
                session_id,
                request,
                file_key,
                now + self._ttl,
                request_id,
                upload_bounds(self._settings.uploads, request, size),
                multipart=columns,
            )
        except ClientError:  # full, or the session went away meanwhile
            await self._uploads.abort(file_key, upload_id)
            raise
        count = part_count(size, part_size)
        first = range(1, min(count, MAX_URLS_PER_CALL) + 1)
        return MultipartTicket(
            file_key=file_key,
            upload_id=upload_id,
            part_size=part_size,
            part_count=count,
            expires_in=self._settings.uploads.upload_url_ttl,
            parts=self._sign(columns, file_key, first, now),
        )

    async def part_urls(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        file_key: str,
        upload_id: str,
        part_numbers: Sequence[int],
    ) -> list[PartUrl]:
        """Fresh URLs for these parts; the upload stays open until they expire too."""
        record = await self._open(principal, session_id, file_key, upload_id)
        numbers = check_part_numbers(part_numbers, _count(record))
        now = self._clock()
        if not await repo.extend_upload_window(record.id, now + self._ttl):
            raise Conflict("the upload is not open any more")
        assert record.declared_size is not None and record.part_size is not None
        columns = MultipartColumns(upload_id, record.declared_size, record.part_size)
        return self._sign(columns, file_key, numbers, now)

    async def uploaded_parts(
        self, principal: Principal, session_id: uuid.UUID, file_key: str, upload_id: str
    ) -> list[Part]:
        """What the store holds of the upload: where a resumed upload picks up."""
        await self._open(principal, session_id, file_key, upload_id)
        try:
            return await self._uploads.parts(file_key, upload_id)
        except UploadGone:
            raise Conflict("the upload is not open any more") from None

    async def complete(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        file_key: str,
        upload_id: str,
        parts: Sequence[Part],
        stage: str | None,
        alt: str | None,
        request_id: str,
    ) -> MediaView:
        """Check the parts against the store and the declared size, complete the upload,
        then confirm it as confirmUpload does. Completing again answers the same."""
        validation.validate_alt(alt)
        if stage is not None:
            validation.normalise_stage(stage)
        # Found (the caller's, this upload) before the lock, so that nobody else's call
        # can hold it; read again under it.
        await self._find(principal, session_id, file_key, upload_id)
        async with _one_call_at_a_time(file_key):
            record = await self._upload_row(principal, session_id, file_key, upload_id)
            if record.status is MediaStatus.REJECTED and record.rejection_reason in NEVER_ASSEMBLED:
                raise Conflict(f"{record.rejection_reason}; it can no longer be completed")
            if record.status is MediaStatus.PENDING_UPLOAD:
                await self._complete_in_store(record, parts)
            return await self._confirm(principal, session_id, file_key, stage, alt, request_id)

    async def _complete_in_store(self, record: MediaRecord, parts: Sequence[Part]) -> None:
        assert record.upload_id and record.declared_size and record.part_size
        try:
            stored = await self._uploads.parts(record.file_key, record.upload_id)
        except UploadGone:
            if await self._store.head(record.file_key) is not None:
                return  # completed by an earlier call that did not get to confirm
            raise Conflict("the upload was aborted or has expired") from None
        problem = completion_problem(parts, stored, record.declared_size, record.part_size)
        if problem is not None:
            raise BadUserInput(problem, field="parts")
        # The store's own listing of the parts checked equal: its ETags, unquoted.
        claimed = {part.number for part in parts}
        listed = sorted((p for p in stored if p.number in claimed), key=lambda p: p.number)
        try:
            await self._uploads.complete(record.file_key, record.upload_id, listed)
        except PartsRefused as error:
            raise BadUserInput(f"the store refused the parts: {error}", field="parts") from None
        except UploadGone:
            raise Conflict("the upload was aborted or has expired") from None

    async def abort(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        file_key: str,
        upload_id: str,
        request_id: str,
    ) -> MediaView:
        """Drop the parts and close the row as REJECTED; aborting a closed upload again
        answers the same."""
        # Found (the caller's, this upload) before the lock, so that nobody else's call
        # can hold it; read again under it.
        await self._find(principal, session_id, file_key, upload_id)
        async with _one_call_at_a_time(file_key):
            record = await self._upload_row(principal, session_id, file_key, upload_id)
            if record.status is MediaStatus.PENDING_UPLOAD:
                await self._abort_in_store(record)
                closed = await repo.transition(
                    record.id,
                    MediaStatus.REJECTED,
                    actor=Actor.user(principal.user_id, request_id),
                    only_from=MediaStatus.PENDING_UPLOAD,
                    rejection_reason=ABORTED,
                )
                record = closed or await self._upload_row(
                    principal, session_id, file_key, upload_id
                )
        if record.status is not MediaStatus.REJECTED:
            raise Conflict(f"the upload is {record.status.value}; it can no longer be aborted")
        return to_view(record, url=None, poster_url=None)

    async def _abort_in_store(self, record: MediaRecord) -> None:
        assert record.upload_id is not None
        try:
            gone = not await self._uploads.abort(record.file_key, record.upload_id)
        except S3Error as error:
            log.warning("the store did not abort a multipart upload: %r", error)
            raise ServiceUnavailable("the store could not abort the upload; try again") from None
        if gone and await self._store.head(record.file_key) is not None:
            # Completed by a call that never got to confirm it: there is a file now.
            raise Conflict("the upload was completed; confirm it with completeMultipartUpload")

    async def _find(
        self, principal: Principal, session_id: uuid.UUID, file_key: str, upload_id: str
    ) -> MediaRecord:
        await authorize_session(principal, session_id)
        return await self._upload_row(principal, session_id, file_key, upload_id)

    async def _upload_row(
        self, principal: Principal, session_id: uuid.UUID, file_key: str, upload_id: str
    ) -> MediaRecord:
        """The upload's row in an authorized session."""
        record = await repo.find_in_session(file_key, session_id, principal.organization_id)
        if record is None or record.upload_id != upload_id:
            raise NotFound("upload not found")
        return record

    async def _open(
        self, principal: Principal, session_id: uuid.UUID, file_key: str, upload_id: str
    ) -> MediaRecord:
        record = await self._find(principal, session_id, file_key, upload_id)
        if record.status is not MediaStatus.PENDING_UPLOAD:
            raise Conflict(f"the upload is {record.status.value}, no longer open")
        return record

    @property
    def _ttl(self) -> timedelta:
        return timedelta(seconds=self._settings.uploads.upload_url_ttl)

    def _sign(
        self, upload: MultipartColumns, file_key: str, numbers: Iterable[int], now: datetime
    ) -> list[PartUrl]:
        """Each URL signs its part's exact length: the store refuses a part of another."""
        return [
            PartUrl(
                number,
                self._store.presign_upload_part(
                    file_key,
                    upload.upload_id,
                    number,
                    self._ttl,
                    now,
                    part_length(number, upload.declared_size, upload.part_size),
                ),
            )
            for number in numbers
        ]


@asynccontextmanager
async def _one_call_at_a_time(file_key: str) -> AsyncIterator[None]:
    """Completing and aborting one upload exclude each other (across API processes): of
    two at once, the one that comes second is refused rather than racing the first."""
    async with locks.advisory_lock(completion_lock(file_key)) as locked:
        if not locked:
            raise Conflict("the upload is being completed or aborted by another call")
        yield


def _count(record: MediaRecord) -> int:
    assert record.declared_size is not None and record.part_size is not None
    return part_count(record.declared_size, record.part_size)
