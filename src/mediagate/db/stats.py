"""What operators watch, counted from the rows: the figures behind /metrics and /readyz."""

from __future__ import annotations

from datetime import datetime, timedelta

from mediagate.db.engine import pool
from mediagate.db.tables import SessionMedia
from mediagate.domain.status import IN_FLIGHT, MediaStatus


async def ping() -> bool:
    try:
        await SessionMedia.raw("SELECT 1")
    except Exception:  # whatever the failure, the database is not usable: not ready
        return False
    return True


async def status_counts() -> dict[MediaStatus, int]:
    rows = await pool().fetch(
        "SELECT status::text AS status, count(*) AS n FROM session_media GROUP BY status"
    )
    counts = dict.fromkeys(MediaStatus, 0)
    counts.update({MediaStatus(row["status"]): row["n"] for row in rows})
    return counts


async def viruses_found() -> int:
    found: int = await pool().fetchval(
        "SELECT count(*) FROM session_media "
        "WHERE status = 'REJECTED' AND rejection_reason LIKE 'virus detected:%'"
    )
    return found


async def processing_seconds(window: timedelta) -> dict[float, float]:
    """Quantiles of upload-to-completion time over the uploads completed within `window`."""
    row = await pool().fetchrow(
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


_IN_FLIGHT_VALUES = [status.value for status in IN_FLIGHT]


async def count_stuck_since_created(created_before: datetime) -> int:
    """In flight though issued before `created_before` (requeues do not reset this)."""
    return await SessionMedia.count().where(  # type: ignore[no-any-return]
        SessionMedia.status.is_in(_IN_FLIGHT_VALUES) & (SessionMedia.created_at < created_before)
    )
