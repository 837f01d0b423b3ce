"""The queries the upload flow runs, through Piccolo. Status changes are conditional updates."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, Unpack

import asyncpg
from piccolo.columns import Column

from mediagate.db.engine import pool
from mediagate.db.tables import SessionMedia
from mediagate.domain.audit import Actor
from mediagate.domain.status import MediaStatus, sources_of


@dataclass(frozen=True, slots=True)
class MediaRecord:
    id: uuid.UUID
    session_id: uuid.UUID
    file_key: str
    original_filename: str
    content_type: str
    file_size: int | None
    stage: str | None
    alt_text: str | None
    status: MediaStatus
    rejection_reason: str | None
    uploaded_by: uuid.UUID
    uploaded_at: datetime | None
    processed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    upload_expires_at: datetime
    checksum_sha256: str | None
    processed_key: str | None
    processed_content_type: str | None
    poster_key: str | None
    width: int | None
    height: int | None
    duration_seconds: float | None
    crashed_attempts: int
    upload_id: str | None
    declared_size: int | None
    part_size: int | None

    @property
    def multipart(self) -> bool:
        return self.upload_id is not None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MediaRecord:
        values = {name: row[name] for name in _RECORD_FIELDS}
        values["status"] = MediaStatus(values["status"])
        return cls(**values)


_RECORD_FIELDS = tuple(f.name for f in fields(MediaRecord))
RECORD_COLUMNS = tuple(SessionMedia._meta.get_column_by_name(name) for name in _RECORD_FIELDS)


class TooManyPending(Exception):
    """The user's outstanding uploads are at the limit; one frees at `retry_at`."""

    def __init__(self, retry_at: datetime) -> None:
        super().__init__(retry_at.isoformat())
        self.retry_at = retry_at


class OverQuota(Exception):
    """The reservation would pass the organization's quota of `quota` bytes."""

    def __init__(self, quota: int) -> None:
        super().__init__(str(quota))
        self.quota = quota


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one new upload is checked against, beside its session's room."""

    max_items: int
    max_pending: int
    # A PUT begun before its URL expired may land this much later.
    late_allowance: timedelta
    # What the item counts against the organization's usage until its file is stored.
    charge: int
    default_quota: int | None


async def insert_pending(
    *,
    organization_id: uuid.UUID,
    session_id: uuid.UUID,
    file_key: str,
    original_filename: str,
    content_type: str,
    stage: str,
    uploaded_by: uuid.UUID,
    upload_expires_at: datetime,
    bounds: Bounds,
    request_id: str | None = None,
    declared_size: int | None = None,
    multipart: MultipartColumns | None = None,
) -> uuid.UUID | None:
    """Insert a PENDING_UPLOAD row if the session belongs to the organization, is open
    and has had fewer than `max_items`, else None; raises TooManyPending or OverQuota
    (and then writes nothing).

    The hot path of getUploadUrl: one call of the database's `add_pending_upload` (see
    piccolo_migrations), sent straight through the engine's connection pool, because
    Piccolo's query builders cost more CPU than the database round trip.
    """
    upload_id, declared, part_size = multipart or (None, declared_size, None)
    try:
        return await pool().fetchval(  # type: ignore[no-any-return]
            _INSERT_PENDING,
            session_id,
            organization_id,
            file_key,
            original_filename,
            content_type,
            stage,
            uploaded_by,
            upload_expires_at,
            request_id,
            upload_id,
            declared,
            part_size,
            bounds.max_items,
            bounds.max_pending,
            bounds.late_allowance,
            bounds.charge,
            bounds.default_quota,
        )
    except asyncpg.PostgresError as error:
        raise _refusal(error) from None


def _refusal(error: Exception) -> Exception:
    detail = str(getattr(error, "detail", None) or "0")
    state = getattr(error, "sqlstate", None)
    if state == _TOO_MANY_PENDING:
        return TooManyPending(datetime.fromtimestamp(float(detail), UTC))
    if state == _OVER_QUOTA:
        return OverQuota(int(detail))
    return error


@dataclass(frozen=True, slots=True)
class MultipartColumns:
    upload_id: str
    declared_size: int
    part_size: int

    def __iter__(self) -> Iterator[Any]:
        return iter((self.upload_id, self.declared_size, self.part_size))


# SQLSTATEs add_pending_upload raises its refusals with (after writing, all rolled back).
_TOO_MANY_PENDING, _OVER_QUOTA = "MG001", "MG002"
_INSERT_PENDING = (
    "SELECT add_pending_upload($1, $2, $3, $4, $5, $6, $7::uuid, $8, $9, $10, $11, $12, $13,"
    " $14, $15, $16, $17)"
)


def _in_organization(organization_id: uuid.UUID) -> Any:
    return SessionMedia.session_id.organization_id == organization_id


async def _first(where: Any) -> MediaRecord | None:
    row = await SessionMedia.select(*RECORD_COLUMNS).where(where).first()
    return None if row is None else MediaRecord.from_row(row)


async def find_for_organization(
    media_id: uuid.UUID, organization_id: uuid.UUID
) -> MediaRecord | None:
    return await _first((SessionMedia.id == media_id) & _in_organization(organization_id))


async def find_in_session(
    file_key: str, session_id: uuid.UUID, organization_id: uuid.UUID
) -> MediaRecord | None:
    return await _first(
        (SessionMedia.file_key == file_key)
        & (SessionMedia.session_id == session_id)
        & _in_organization(organization_id)
    )


async def find_by_key(file_key: str) -> MediaRecord | None:
    return await _first(SessionMedia.file_key == file_key)


async def list_session_media(session_id: uuid.UUID, stage: str | None) -> list[MediaRecord]:
    """All of a session's media (at most MAX_SESSION_ITEMS), for operators' commands."""
    query = SessionMedia.select(*RECORD_COLUMNS).where(SessionMedia.session_id == session_id)
    if stage is not None:
        query = query.where(SessionMedia.stage == stage)
    rows = await query.order_by(SessionMedia.created_at).order_by(SessionMedia.id)
    return [MediaRecord.from_row(row) for row in rows]


_SESSION_PAGE = f"""
SELECT {", ".join(_RECORD_FIELDS)} FROM session_media
WHERE session_id = $1 AND ($2::text IS NULL OR stage = $2)
  AND ($3::uuid IS NULL OR (created_at, id) > (
    SELECT created_at, id FROM session_media WHERE id = $3 AND session_id = $1
  ))
ORDER BY created_at, id
LIMIT $4
"""


async def session_media_page(
    session_id: uuid.UUID, stage: str | None, after: uuid.UUID | None, limit: int
) -> list[MediaRecord]:
    """Up to `limit` of a session's media, oldest first, after the item `after` (none
    when `after` is not an item of the session)."""
    rows = await pool().fetch(_SESSION_PAGE, session_id, stage, after, limit)
    return [MediaRecord.from_row(dict(row)) for row in rows]


async def is_in_session(media_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    return await SessionMedia.exists().where(
        (SessionMedia.id == media_id) & (SessionMedia.session_id == session_id)
    )


async def find_many(media_ids: list[uuid.UUID]) -> list[MediaRecord]:
    rows = await SessionMedia.select(*RECORD_COLUMNS).where(SessionMedia.id.is_in(media_ids))
    return [MediaRecord.from_row(row) for row in rows]


async def list_media_of_sessions(session_ids: list[uuid.UUID]) -> list[MediaRecord]:
    rows = await (
        SessionMedia.select(*RECORD_COLUMNS)
        .where(SessionMedia.session_id.is_in(session_ids))
        .order_by(SessionMedia.created_at)
        .order_by(SessionMedia.id)
    )
    return [MediaRecord.from_row(row) for row in rows]


async def with_status(status: MediaStatus, limit: int) -> list[MediaRecord]:
    rows = await (
        SessionMedia.select(*RECORD_COLUMNS)
        .where(SessionMedia.status == status.value)
        .order_by(SessionMedia.updated_at)
        .limit(limit)
    )
    return [MediaRecord.from_row(row) for row in rows]


class MediaChanges(TypedDict, total=False):
    """What a status change may also set: the columns by name, typed."""

    rejection_reason: str | None
    file_size: int
    processed_key: str
    processed_content_type: str
    poster_key: str | None
    poster_size: int | None
    checksum_sha256: str
    width: int
    height: int
    duration_seconds: float | None
    processed_at: datetime
    alt_text: str | None
    stage: str | None
    uploaded_at: datetime


async def transition(
    media_id: uuid.UUID,
    target: MediaStatus,
    *,
    actor: Actor,
    only_from: MediaStatus | None = None,
    **changes: Unpack[MediaChanges],
) -> MediaRecord | None:
    """Move a row to `target` if its current status allows it (and is `only_from`, when
    given); None when it did not. The guard is in the WHERE clause, so of two
    concurrent callers exactly one wins."""
    sources = sources_of(target)
    if only_from is not None:
        assert only_from in sources, f"{only_from} cannot move to {target}"
        sources = frozenset({only_from})
    allowed = [status.value for status in sources]
    values: dict[Column | str, Any] = {
        SessionMedia.status: target.value,
        SessionMedia.updated_at: datetime.now(UTC),
        SessionMedia.changed_by: actor.label,
        SessionMedia.change_ref: actor.reference,
        **{SessionMedia._meta.get_column_by_name(name): value for name, value in changes.items()},
    }
    rows = await (
        SessionMedia.update(values)
        .where((SessionMedia.id == media_id) & SessionMedia.status.is_in(allowed))
        .returning(*RECORD_COLUMNS)
    )
    return MediaRecord.from_row(rows[0]) if rows else None


async def extend_upload_window(media_id: uuid.UUID, expires_at: datetime) -> bool:
    """Push a PENDING_UPLOAD row's URL expiry to `expires_at` (fresh part URLs were
    issued); False when the row is not PENDING_UPLOAD any more."""
    rows = await (
        SessionMedia.update(
            {SessionMedia.upload_expires_at: expires_at, SessionMedia.updated_at: datetime.now(UTC)}
        )
        .where(
            (SessionMedia.id == media_id)
            & (SessionMedia.status == MediaStatus.PENDING_UPLOAD.value)
        )
        .returning(SessionMedia.id)
    )
    return bool(rows)


async def record_confirmation(
    media_id: uuid.UUID,
    *,
    alt_text: str | None,
    stage: str | None,
    uploaded_at: datetime,
    actor: Actor,
) -> MediaRecord | None:
    """Store what confirmUpload brings when the worker moved the row on first (event first)."""
    values: dict[Column | str, Any] = {
        SessionMedia.uploaded_at: uploaded_at,
        SessionMedia.updated_at: datetime.now(UTC),
        SessionMedia.alt_text: alt_text,
        SessionMedia.changed_by: actor.label,
        SessionMedia.change_ref: actor.reference,
    }
    if stage is not None:
        values[SessionMedia.stage] = stage
    rows = await (
        SessionMedia.update(values)
        .where((SessionMedia.id == media_id) & SessionMedia.uploaded_at.is_null())
        .returning(*RECORD_COLUMNS)
    )
    return MediaRecord.from_row(rows[0]) if rows else None


async def count_crash(media_id: uuid.UUID) -> int:
    """Record that a job on this upload died mid-way; returns how many have."""
    rows = await (
        SessionMedia.update({SessionMedia.crashed_attempts: SessionMedia.crashed_attempts + 1})
        .where(SessionMedia.id == media_id)
        .returning(SessionMedia.crashed_attempts)
    )
    return int(rows[0]["crashed_attempts"]) if rows else 0
