"""The upload flow the API exposes: presign, confirm, and read media status."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, Unpack

from mediagate.config import Settings
from mediagate.db import engine, session_rows
from mediagate.db import media_rows as repo
from mediagate.db.media_rows import MediaChanges, MediaRecord
from mediagate.domain import keys, validation
from mediagate.domain.audit import Actor
from mediagate.domain.clock import utcnow
from mediagate.domain.media_types import DEFAULT_STAGE, MEDIA_TYPES, STAGES
from mediagate.domain.principal import Principal
from mediagate.domain.status import IN_FLIGHT, MediaStatus
from mediagate.domain.validation import StoredObject
from mediagate.errors import BadUserInput, Conflict, NotFound, ServiceUnavailable
from mediagate.events.messages import ProcessJob
from mediagate.services.media_view import MediaView, to_view
from mediagate.services.multipart import MultipartService
from mediagate.services.sessions import (
    add_pending,
    authorize_session,
    check_size,
    upload_bounds,
)
from mediagate.storage.object_store import ObjectStore

log = logging.getLogger(__name__)

_KNOWN_USERS_LIMIT = 100_000


class Publisher(Protocol):
    async def publish(self, job: ProcessJob) -> None: ...


@dataclass(frozen=True, slots=True)
class UploadTicket:
    upload_url: str
    file_key: str
    expires_in: int


async def queue_for_processing(
    publisher: Publisher,
    record: MediaRecord,
    *,
    only_from: MediaStatus,
    actor: Actor,
    **changes: Unpack[MediaChanges],
) -> MediaRecord | None:
    """Move the row to UPLOADED and publish its processing job, in one transaction.

    If the broker does not confirm the job, the change is rolled back: a row is never
    UPLOADED without its job. None when the row was not in `only_from` any more.
    """
    async with engine.transaction():
        uploaded = await repo.transition(
            record.id, MediaStatus.UPLOADED, actor=actor, only_from=only_from, **changes
        )
        if uploaded is not None:
            await publisher.publish(ProcessJob(record.id, record.file_key, record.session_id))
    return uploaded


@dataclass(frozen=True, slots=True)
class ContentTypePolicy:
    content_type: str
    kind: str
    extensions: tuple[str, ...]
    max_bytes: int


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    content_types: tuple[ContentTypePolicy, ...]
    stages: tuple[str, ...]
    default_stage: str
    max_filename_bytes: int
    max_alt_chars: int
    upload_url_expires_in: int
    download_url_expires_in: int
    multipart_part_size: int
    size_required: bool


def upload_policy(settings: Settings) -> UploadPolicy:
    """The rules getUploadUrl and confirmUpload apply, for clients to check first."""
    return UploadPolicy(
        content_types=tuple(
            ContentTypePolicy(
                media.content_type,
                media.kind.name,
                media.extensions,
                settings.uploads.max_bytes(media.kind),
            )
            for media in MEDIA_TYPES.values()
        ),
        stages=tuple(sorted(STAGES)),
        default_stage=DEFAULT_STAGE,
        size_required=settings.uploads.require_size,
        max_filename_bytes=validation.MAX_FILENAME_BYTES,
        max_alt_chars=validation.MAX_ALT_CHARS,
        upload_url_expires_in=settings.uploads.upload_url_ttl,
        download_url_expires_in=settings.uploads.download_url_ttl,
        multipart_part_size=settings.uploads.multipart_part_size,
    )


def upload_problem(settings: Settings, record: MediaRecord, stored: StoredObject) -> str | None:
    """Why the object stored for this row must be rejected, or None."""
    return validation.rejection_reason(
        stored,
        record.content_type,
        settings.uploads.max_bytes(MEDIA_TYPES[record.content_type].kind),
        None if record.multipart else record.upload_expires_at,
        record.declared_size,
    )


async def delete_objects(store: ObjectStore, record: MediaRecord) -> None:
    """Every object the item ever had: its processed copy, its poster, its original."""
    for key in (record.processed_key, record.poster_key, record.file_key):
        if key is not None:
            await store.delete(key)


class UploadService:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        publisher: Publisher,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._known_users: set[Principal] = set()
        self.policy = upload_policy(settings)
        self.limits = settings.uploads
        self.multipart = MultipartService(
            settings, store, self.ensure_user, self.confirm_upload, clock
        )

    async def request_upload(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        filename: str,
        content_type: str,
        stage: str | None,
        request_id: str,
        size: int | None = None,
    ) -> UploadTicket:
        """A row and a presigned PUT. With `size`, the URL signs Content-Length: the
        store itself refuses a body of any other length."""
        request = validation.check_upload_request(filename, content_type, stage)
        limits = self._settings.uploads
        check_size(limits, request, size)
        await self.ensure_user(principal)

        ttl = limits.upload_url_ttl
        now = self._clock()
        file_key = keys.upload_key(session_id, request.stage, request.extension)
        expires_at = now + timedelta(seconds=ttl)
        await add_pending(
            principal,
            session_id,
            request,
            file_key,
            expires_at,
            request_id,
            upload_bounds(limits, request, size),
            declared_size=size,
        )
        upload_url = self._store.presign_put(file_key, timedelta(seconds=ttl), now, size)
        return UploadTicket(upload_url=upload_url, file_key=file_key, expires_in=ttl)

    async def confirm_upload(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        file_key: str,
        stage: str | None,
        alt: str | None,
        request_id: str,
    ) -> MediaView:
        actor = Actor.user(principal.user_id, request_id)
        stage_name = validation.normalise_stage(stage) if stage is not None else None
        alt = validation.validate_alt(alt)
        await authorize_session(principal, session_id)
        record = await repo.find_in_session(file_key, session_id, principal.organization_id)
        if record is None:
            raise NotFound("media not found")
        if record.status is not MediaStatus.PENDING_UPLOAD:
            return self._confirmation_view(await self._confirm_late(record, stage_name, alt, actor))

        stored = await self._store.head(file_key)
        if stored is None:
            raise BadUserInput("the file was not found in storage; upload it first")
        reason = upload_problem(self._settings, record, stored)
        if reason is not None:
            return self._confirmation_view(await self._reject(record, reason, stored.size, actor))
        return self._confirmation_view(
            await self._accept(record, stage_name, alt, stored.size, actor)
        )

    async def _reject(
        self, record: MediaRecord, reason: str, size: int, actor: Actor
    ) -> MediaRecord:
        rejected = await repo.transition(
            record.id, MediaStatus.REJECTED, actor=actor, rejection_reason=reason, file_size=size
        )
        if rejected is None:
            return await self._reload(record)
        log.info("upload rejected", extra={"media_id": str(record.id), "reason": reason})
        await self._store.delete(record.file_key)
        return rejected

    async def _accept(
        self, record: MediaRecord, stage: str | None, alt: str | None, size: int, actor: Actor
    ) -> MediaRecord:
        try:
            uploaded = await queue_for_processing(
                self._publisher,
                record,
                only_from=MediaStatus.PENDING_UPLOAD,
                actor=actor,
                alt_text=alt,
                stage=stage or record.stage,
                uploaded_at=self._clock(),
                file_size=size,
            )
        except Exception as error:
            # Nothing was changed: the row is still PENDING_UPLOAD; confirming again works.
            log.warning("queueing the upload failed: %r", error)
            raise ServiceUnavailable("the upload could not be queued; try again") from error
        return uploaded or await self._confirm_late(record, stage, alt, actor)

    async def _confirm_late(
        self, record: MediaRecord, stage: str | None, alt: str | None, actor: Actor
    ) -> MediaRecord:
        """The row left PENDING_UPLOAD without this call: keep the first confirmation's
        alt and stage if the worker (bucket event first) got there before any confirm."""
        current = await self._reload(record)
        if current.uploaded_at is not None or current.status in (
            MediaStatus.REJECTED,
            MediaStatus.DELETED,
        ):
            return current  # confirmed before, rejected or deleted: change nothing
        late = await repo.record_confirmation(
            current.id, alt_text=alt, stage=stage, uploaded_at=self._clock(), actor=actor
        )
        return late or await self._reload(record)

    async def _reload(self, record: MediaRecord) -> MediaRecord:
        current = await repo.find_by_key(record.file_key)
        assert current is not None, "rows are never deleted while a session exists"
        return current

    def _confirmation_view(self, record: MediaRecord) -> MediaView:
        # The spec hands back a GET URL of the *original*, unscanned upload. We sign
        # the processed copy's key instead: it answers 404 until processing succeeds,
        # so no unscanned byte is ever served through a URL we issued.
        final_key = keys.processed_key(record.file_key, keys.output_extension(record.content_type))
        url = self._store.presign_get(
            final_key, timedelta(seconds=self._settings.uploads.download_url_ttl), self._clock()
        )
        return to_view(record, url=url, poster_url=None)

    async def delete_media(
        self, principal: Principal, media_id: uuid.UUID, request_id: str
    ) -> MediaView:
        """The row says DELETED (durably, with its audit event) before any file goes, so
        a failure half-way leaves nothing served; deleting again finishes the job."""
        record = await repo.find_for_organization(media_id, principal.organization_id)
        if record is None:
            raise NotFound("media not found")
        if record.status is not MediaStatus.DELETED:
            if record.status in IN_FLIGHT:
                raise Conflict("the upload is being processed; delete it once it is done")
            deleted = await repo.transition(
                record.id, MediaStatus.DELETED, actor=Actor.user(principal.user_id, request_id)
            )
            if deleted is None:  # a worker took it meanwhile
                raise Conflict("the upload is being processed; delete it once it is done")
            record = deleted
        await delete_objects(self._store, record)
        return self._view(record)

    async def media(self, principal: Principal, media_id: uuid.UUID) -> MediaView:
        record = await repo.find_for_organization(media_id, principal.organization_id)
        if record is None:
            raise NotFound("media not found")
        return self._view(record)

    async def session_media(
        self,
        principal: Principal,
        session_id: uuid.UUID,
        stage: str | None,
        first: int | None = validation.DEFAULT_PAGE,
        after: uuid.UUID | None = None,
    ) -> list[MediaView]:
        """A page of the session's media, oldest first, after the item `after`."""
        stage_name = validation.normalise_stage(stage) if stage is not None else None
        limit = validation.check_page_size(first)
        await authorize_session(principal, session_id)
        records = await repo.session_media_page(session_id, stage_name, after, limit)
        # An empty page after an item that is not the session's is the caller's mistake.
        if not records and after is not None and not await repo.is_in_session(after, session_id):
            raise BadUserInput("after is not an item of this session", field="after")
        return [self._view(record) for record in records]

    async def views_of_media(self, media_ids: list[uuid.UUID]) -> list[MediaView]:
        """Views of these rows for subscribers already authorized for their sessions."""
        return [self._view(record) for record in await repo.find_many(media_ids)]

    async def views_in_sessions(self, session_ids: list[uuid.UUID]) -> list[MediaView]:
        """Views of every row of these sessions, for subscribers already authorized."""
        return [self._view(record) for record in await repo.list_media_of_sessions(session_ids)]

    def _view(self, record: MediaRecord) -> MediaView:
        """Download URLs only for media that passed the scan and was sanitized."""
        if record.status is not MediaStatus.COMPLETED or record.processed_key is None:
            return to_view(record, url=None, poster_url=None)
        ttl = timedelta(seconds=self._settings.uploads.download_url_ttl)
        now = self._clock()
        poster = record.poster_key and self._store.presign_get(record.poster_key, ttl, now)
        return to_view(
            record, url=self._store.presign_get(record.processed_key, ttl, now), poster_url=poster
        )

    async def ensure_user(self, principal: Principal) -> None:
        """Users from the identity provider get a row on first use (uploaded_by references it)."""
        if principal in self._known_users:
            return
        await session_rows.ensure_user(principal.user_id, principal.organization_id)
        if len(self._known_users) >= _KNOWN_USERS_LIMIT:
            self._known_users.clear()
        self._known_users.add(principal)
