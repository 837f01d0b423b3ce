"""The queries the upload flow runs, through Piccolo. Status changes are conditional updates."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from piccolo.columns import Column
from piccolo.engine.postgres import PostgresEngine

from mediagate.db.tables import AuditEvent, GarageSession, SessionMedia, User
from mediagate.domain.audit import Actor
from mediagate.domain.status import IN_FLIGHT, NEEDS_ORIGINAL, MediaStatus, sources_of


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
_COLUMNS = tuple(SessionMedia._meta.get_column_by_name(name) for name in _RECORD_FIELDS)


def transaction() -> Any:
    """Queries awaited inside `async with transaction():` run in one transaction."""
    return SessionMedia._meta.db.transaction()


async def ping() -> bool:
    try:
        await SessionMedia.raw("SELECT 1")
    except Exception:  # whatever the failure, the database is not usable: not ready
        return False
    return True


async def ensure_user(user_id: uuid.UUID, organization_id: uuid.UUID) -> None:
    await User.insert(User(id=user_id, organization_id=organization_id)).on_conflict(
        action="DO NOTHING"
    )


async def create_session(
    organization_id: uuid.UUID, session_id: uuid.UUID | None = None
) -> uuid.UUID:
    session = GarageSession(id=session_id or uuid.uuid4(), organization_id=organization_id)
    await GarageSession.insert(session)
    return uuid.UUID(str(session.id))


async def delete_session(session_id: uuid.UUID) -> None:
    """The session and (by cascade) its media rows; audit events are kept."""
    await GarageSession.delete().where(GarageSession.id == session_id)


async def session_organization(session_id: uuid.UUID) -> uuid.UUID | None:
    row = (
        await GarageSession.select(GarageSession.organization_id)
        .where(GarageSession.id == session_id)
        .first()
    )
    return None if row is None else row["organization_id"]


async def session_item_count(session_id: uuid.UUID) -> int:
    row = (
        await GarageSession.select(GarageSession.item_count)
        .where(GarageSession.id == session_id)
        .first()
    )
    return 0 if row is None else int(row["item_count"])


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
    max_items: int,
    request_id: str | None = None,
    multipart: MultipartColumns | None = None,
) -> uuid.UUID | None:
    """Insert a PENDING_UPLOAD row if the session belongs to the organization and has had
    fewer than `max_items`, else None.

    The hot path of getUploadUrl: one statement that checks and inserts, sent straight
    through the engine's connection pool, because Piccolo's query builders cost more
    CPU than the database round trip.
    """
    return await _pool().fetchval(  # type: ignore[no-any-return]
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
        *(multipart or _SINGLE_PUT),
        max_items,
    )


@dataclass(frozen=True, slots=True)
class MultipartColumns:
    upload_id: str
    declared_size: int
    part_size: int

    def __iter__(self) -> Iterator[Any]:
        return iter((self.upload_id, self.declared_size, self.part_size))


_SINGLE_PUT = (None, None, None)

# The session's count goes up in the statement that adds the row: of two requests for
# the last place, the second waits for the first's row lock and then finds it taken.
_INSERT_PENDING = """
WITH s AS (
  UPDATE garage_sessions SET item_count = item_count + 1
  WHERE id = $1 AND organization_id = $2 AND item_count < $13
  RETURNING id
)
INSERT INTO session_media (
  session_id, file_key, original_filename, content_type, stage, uploaded_by, upload_expires_at,
  changed_by, change_ref, upload_id, declared_size, part_size
)
SELECT s.id, $3, $4, $5, $6, $7::uuid, $8, 'user:' || $7::uuid::text, $9, $10, $11, $12
FROM s
RETURNING id
"""


def _pool() -> Any:
    engine = SessionMedia._meta.db
    assert isinstance(engine, PostgresEngine) and engine.pool is not None, "start the pool first"
    return engine.pool


def _in_organization(organization_id: uuid.UUID) -> Any:
    return SessionMedia.session_id.organization_id == organization_id


async def _first(where: Any) -> MediaRecord | None:
    row = await SessionMedia.select(*_COLUMNS).where(where).first()
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
    query = SessionMedia.select(*_COLUMNS).where(SessionMedia.session_id == session_id)
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
    rows = await _pool().fetch(_SESSION_PAGE, session_id, stage, after, limit)
    return [MediaRecord.from_row(dict(row)) for row in rows]


async def is_in_session(media_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    return await SessionMedia.exists().where(
        (SessionMedia.id == media_id) & (SessionMedia.session_id == session_id)
    )


async def find_many(media_ids: list[uuid.UUID]) -> list[MediaRecord]:
    rows = await SessionMedia.select(*_COLUMNS).where(SessionMedia.id.is_in(media_ids))
    return [MediaRecord.from_row(row) for row in rows]


async def list_media_of_sessions(session_ids: list[uuid.UUID]) -> list[MediaRecord]:
    rows = await (
        SessionMedia.select(*_COLUMNS)
        .where(SessionMedia.session_id.is_in(session_ids))
        .order_by(SessionMedia.created_at)
        .order_by(SessionMedia.id)
    )
    return [MediaRecord.from_row(row) for row in rows]


async def with_status(status: MediaStatus, limit: int) -> list[MediaRecord]:
    rows = await (
        SessionMedia.select(*_COLUMNS)
        .where(SessionMedia.status == status.value)
        .order_by(SessionMedia.updated_at)
        .limit(limit)
    )
    return [MediaRecord.from_row(row) for row in rows]


async def transition(
    media_id: uuid.UUID,
    target: MediaStatus,
    *,
    actor: Actor,
    only_from: MediaStatus | None = None,
    **changes: Any,
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
        .returning(*_COLUMNS)
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


async def pending_upload_ids(upload_ids: list[str]) -> set[str]:
    """Which of these multipart upload ids belong to rows still PENDING_UPLOAD."""
    rows = await SessionMedia.select(SessionMedia.upload_id).where(
        SessionMedia.upload_id.is_in(upload_ids)
        & (SessionMedia.status == MediaStatus.PENDING_UPLOAD.value)
    )
    return {row["upload_id"] for row in rows}


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
        .returning(*_COLUMNS)
    )
    return MediaRecord.from_row(rows[0]) if rows else None


@asynccontextmanager
async def advisory_lock(name: str) -> AsyncIterator[bool]:
    """Hold a PostgreSQL advisory lock on `name` (an upload's key, or a task's name) for
    as long as the block runs.

    Yields False when another process holds it. The lock lives on its own connection,
    so a process that dies releases it with its connection, and a redelivery can resume.
    """
    async with _pool().acquire() as connection:
        locked = await connection.fetchval(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", name
        )
        try:
            yield bool(locked)
        finally:
            if locked:
                await connection.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", name)


async def count_crash(media_id: uuid.UUID) -> int:
    """Record that a job on this upload died mid-way; returns how many have."""
    rows = await (
        SessionMedia.update({SessionMedia.crashed_attempts: SessionMedia.crashed_attempts + 1})
        .where(SessionMedia.id == media_id)
        .returning(SessionMedia.crashed_attempts)
    )
    return int(rows[0]["crashed_attempts"]) if rows else 0


async def status_counts() -> dict[MediaStatus, int]:
    rows = await _pool().fetch(
        "SELECT status::text AS status, count(*) AS n FROM session_media GROUP BY status"
    )
    counts = dict.fromkeys(MediaStatus, 0)
    counts.update({MediaStatus(row["status"]): row["n"] for row in rows})
    return counts


async def viruses_found() -> int:
    found: int = await _pool().fetchval(
        "SELECT count(*) FROM session_media "
        "WHERE status = 'REJECTED' AND rejection_reason LIKE 'virus detected:%'"
    )
    return found


async def processing_seconds(window: timedelta) -> dict[float, float]:
    """Quantiles of upload-to-completion time over the uploads completed within `window`."""
    row = await _pool().fetchrow(
        """
        SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
                 ORDER BY extract(epoch FROM processed_at - coalesce(uploaded_at, created_at))
               ) AS q
        FROM session_media
        WHERE status = 'COMPLETED' AND processed_at > now() - $1::interval
        """,
        window,
    )
    values = row["q"] if row is not None else None
    return dict(zip((0.5, 0.95, 0.99), values, strict=True)) if values else {}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    occurred_at: datetime
    organization_id: uuid.UUID
    session_id: uuid.UUID
    media_id: uuid.UUID
    action: str
    from_status: str | None
    to_status: str
    reason: str | None
    actor: str
    reference: str | None


_AUDIT_COLUMNS = tuple(AuditEvent._meta.get_column_by_name(f.name) for f in fields(AuditRecord))


async def audit_events(
    organization_id: uuid.UUID | None,
    *,
    session_id: uuid.UUID | None,
    media_id: uuid.UUID | None,
    after_id: int,
    limit: int,
) -> list[AuditRecord]:
    """An organization's (None: any, for operators) events of one session or one media
    item, oldest first, after the event `after_id` (the cursor)."""
    where: Any = AuditEvent.id > after_id
    if organization_id is not None:
        where &= AuditEvent.organization_id == organization_id
    if session_id is not None:
        where &= AuditEvent.session_id == session_id
    if media_id is not None:
        where &= AuditEvent.media_id == media_id
    rows = await (
        AuditEvent.select(*_AUDIT_COLUMNS).where(where).order_by(AuditEvent.id).limit(limit)
    )
    return [AuditRecord(**row) for row in rows]


async def purge_audit_events(older_than: datetime) -> int:
    deleted = await (
        AuditEvent.delete().where(AuditEvent.occurred_at < older_than).returning(AuditEvent.id)
    )
    return len(deleted)


_IN_FLIGHT_VALUES = [status.value for status in IN_FLIGHT]


async def stuck_in_flight(updated_before: datetime, limit: int) -> list[MediaRecord]:
    """Rows a worker should have moved on by now (the oldest first)."""
    rows = await (
        SessionMedia.select(*_COLUMNS)
        .where(
            SessionMedia.status.is_in(_IN_FLIGHT_VALUES)
            & (SessionMedia.updated_at < updated_before)
        )
        .order_by(SessionMedia.updated_at)
        .limit(limit)
    )
    return [MediaRecord.from_row(row) for row in rows]


async def count_stuck_since_created(created_before: datetime) -> int:
    """In flight though issued before `created_before` (requeues do not reset this)."""
    return await SessionMedia.count().where(  # type: ignore[no-any-return]
        SessionMedia.status.is_in(_IN_FLIGHT_VALUES) & (SessionMedia.created_at < created_before)
    )


async def expired_pending(expired_before: datetime, limit: int) -> list[MediaRecord]:
    rows = await (
        SessionMedia.select(*_COLUMNS)
        .where(
            (SessionMedia.status == MediaStatus.PENDING_UPLOAD.value)
            & (SessionMedia.upload_expires_at < expired_before)
        )
        .order_by(SessionMedia.upload_expires_at)
        .limit(limit)
    )
    return [MediaRecord.from_row(row) for row in rows]


async def mark_requeued(media_id: uuid.UUID, actor: Actor) -> None:
    """Its job was queued again without a status change: the row's clock restarts (so it
    is not queued again before the bound) and the audit log says so, in one statement."""
    await _pool().execute(
        """
        WITH touched AS (
          UPDATE session_media SET updated_at = now(), changed_by = $2, change_ref = $3
          WHERE id = $1
          RETURNING id, session_id, status
        )
        INSERT INTO audit_events (
          organization_id, session_id, media_id, action, from_status, to_status, actor,
          reference
        )
        SELECT s.organization_id, t.session_id, t.id, 'requeued', t.status::text,
               t.status::text, $2, $3
        FROM touched t JOIN garage_sessions s ON s.id = t.session_id
        """,
        media_id,
        actor.label,
        actor.reference,
    )


async def upload_keys_needed(file_keys: list[str]) -> set[str]:
    """Which of these upload keys belong to rows that may still need their original."""
    rows = await SessionMedia.select(SessionMedia.file_key).where(
        SessionMedia.file_key.is_in(file_keys) & SessionMedia.status.is_in(_NEEDS_ORIGINAL_VALUES)
    )
    return {row["file_key"] for row in rows}


_NEEDS_ORIGINAL_VALUES = [status.value for status in NEEDS_ORIGINAL]


async def completed_outputs_after(after: str, limit: int) -> list[str]:
    """Keys of COMPLETED rows' processed copies and posters, in byte order (the order an
    S3 listing has), after `after`."""
    rows = await _pool().fetch(
        """
        SELECT key FROM (
          SELECT processed_key AS key FROM session_media
          WHERE status = 'COMPLETED' AND processed_key IS NOT NULL
          UNION ALL
          SELECT poster_key FROM session_media
          WHERE status = 'COMPLETED' AND poster_key IS NOT NULL
        ) outputs
        WHERE key COLLATE "C" > $1
        ORDER BY key COLLATE "C"
        LIMIT $2
        """,
        after,
        limit,
    )
    return [row["key"] for row in rows]
