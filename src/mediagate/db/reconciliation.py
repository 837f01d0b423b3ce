"""What the reconciler looks for: rows a worker should have moved on, expired uploads,
the keys that rows still need or point at."""

from __future__ import annotations

import uuid
from datetime import datetime

from mediagate.db.engine import pool
from mediagate.db.media_rows import RECORD_COLUMNS, MediaRecord
from mediagate.db.tables import SessionMedia
from mediagate.domain.audit import Actor
from mediagate.domain.status import IN_FLIGHT, NEEDS_ORIGINAL, MediaStatus

_IN_FLIGHT_VALUES = [status.value for status in IN_FLIGHT]


async def stuck_in_flight(updated_before: datetime, limit: int) -> list[MediaRecord]:
    """Rows a worker should have moved on by now (the oldest first)."""
    rows = await (
        SessionMedia.select(*RECORD_COLUMNS)
        .where(
            SessionMedia.status.is_in(_IN_FLIGHT_VALUES)
            & (SessionMedia.updated_at < updated_before)
        )
        .order_by(SessionMedia.updated_at)
        .limit(limit)
    )
    return [MediaRecord.from_row(row) for row in rows]


async def expired_pending(expired_before: datetime, limit: int) -> list[MediaRecord]:
    rows = await (
        SessionMedia.select(*RECORD_COLUMNS)
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
    await pool().execute(
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
    rows = await pool().fetch(
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


async def pending_upload_ids(upload_ids: list[str]) -> set[str]:
    """Which of these multipart upload ids belong to rows still PENDING_UPLOAD."""
    rows = await SessionMedia.select(SessionMedia.upload_id).where(
        SessionMedia.upload_id.is_in(upload_ids)
        & (SessionMedia.status == MediaStatus.PENDING_UPLOAD.value)
    )
    return {row["upload_id"] for row in rows}


async def database_now() -> datetime:
    """The database's clock: what `updated_at` columns are compared with."""
    return await pool().fetchval("SELECT clock_timestamp()")  # type: ignore[no-any-return]
