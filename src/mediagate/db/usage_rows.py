"""What each organization holds in the store (a counter the triggers keep, see
piccolo_migrations) and the quota it may hold."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from mediagate.db.engine import pool


@dataclass(frozen=True, slots=True)
class UsageRecord:
    organization_id: uuid.UUID
    used_bytes: int
    # Whether it has a quota of its own (then `quota_bytes`, None: none) or the default.
    quota_is_own: bool
    quota_bytes: int | None

    def quota(self, default: int | None) -> int | None:
        return self.quota_bytes if self.quota_is_own else default


async def usage(organization_id: uuid.UUID) -> UsageRecord:
    row = await pool().fetchrow(
        """
        SELECT (SELECT COALESCE(sum(used_bytes), 0) FROM usage_shards
                WHERE organization_id = $1)::bigint AS used_bytes,
               q.organization_id IS NOT NULL AS quota_is_own, q.quota_bytes
        FROM (SELECT 1) AS one
        LEFT JOIN organization_quotas q ON q.organization_id = $1
        """,
        organization_id,
    )
    return UsageRecord(organization_id, row["used_bytes"], row["quota_is_own"], row["quota_bytes"])


async def set_quota(organization_id: uuid.UUID, own: bool, quota_bytes: int | None) -> None:
    """The organization's own quota (`own`; None: none at all), or back to the default."""
    if not own:
        await pool().execute(
            "DELETE FROM organization_quotas WHERE organization_id = $1", organization_id
        )
        return
    await pool().execute(
        """
        INSERT INTO organization_quotas (organization_id, quota_bytes) VALUES ($1, $2)
        ON CONFLICT (organization_id) DO UPDATE SET quota_bytes = $2
        """,
        organization_id,
        quota_bytes,
    )


async def stored_bytes_of_uploads(page: list[tuple[str, int]]) -> dict[uuid.UUID, int]:
    """Of these listed originals (key, size), the bytes of those a row holds (uploaded,
    in flight or SCAN_FAILED), by organization."""
    return await _sum(
        page,
        """
        JOIN session_media m ON m.file_key = s.key
          AND m.status IN ('UPLOADED', 'SCANNING', 'PROCESSING', 'SCAN_FAILED')
        """,
    )


async def stored_bytes_of_outputs(page: list[tuple[str, int]]) -> dict[uuid.UUID, int]:
    """Of these listed outputs (key, size), the bytes of COMPLETED rows' copies and
    posters, by organization."""
    copies = await _sum(
        page, "JOIN session_media m ON m.processed_key = s.key AND m.status = 'COMPLETED'"
    )
    posters = await _sum(
        page, "JOIN session_media m ON m.poster_key = s.key AND m.status = 'COMPLETED'"
    )
    return {org: copies.get(org, 0) + posters.get(org, 0) for org in copies.keys() | posters}


async def _sum(page: list[tuple[str, int]], join: str) -> dict[uuid.UUID, int]:
    rows = await pool().fetch(
        f"""
        SELECT g.organization_id, sum(s.size)::bigint AS bytes
        FROM unnest($1::text[], $2::bigint[]) AS s(key, size)
        {join}
        JOIN garage_sessions g ON g.id = m.session_id
        GROUP BY g.organization_id
        """,
        [key for key, _ in page],
        [size for _, size in page],
    )
    return {row["organization_id"]: row["bytes"] for row in rows}


@dataclass(frozen=True, slots=True)
class Drift:
    organization_id: uuid.UUID
    counted: int
    actual: int


async def correct(stored: dict[uuid.UUID, int], listed_from: datetime, apply: bool) -> list[Drift]:
    """Organizations whose usage is not what the store holds for their rows plus their
    outstanding uploads' reservations; set right (when `apply`) unless their usage moved
    since the listing began (then the next run looks again)."""
    rows = await pool().fetch(
        """
        WITH stored AS (
          SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS s(organization_id, bytes)
        ), reserved AS (
          SELECT g.organization_id, sum(m.charged_bytes)::bigint AS bytes
          FROM session_media m JOIN garage_sessions g ON g.id = m.session_id
          WHERE m.status = 'PENDING_UPLOAD' GROUP BY g.organization_id
        ), counted AS (
          SELECT organization_id, sum(used_bytes)::bigint AS bytes, max(updated_at) AS moved
          FROM usage_shards GROUP BY organization_id
        )
        SELECT c.organization_id, c.bytes AS counted,
               COALESCE(s.bytes, 0) + COALESCE(r.bytes, 0) AS actual
        FROM counted c
        LEFT JOIN stored s USING (organization_id)
        LEFT JOIN reserved r USING (organization_id)
        WHERE c.moved < $3 AND c.bytes <> COALESCE(s.bytes, 0) + COALESCE(r.bytes, 0)
        """,
        list(stored),
        list(stored.values()),
        listed_from,
    )
    drifts = [Drift(row["organization_id"], row["counted"], row["actual"]) for row in rows]
    if apply and drifts:
        async with pool().acquire() as connection, connection.transaction():
            for drift in drifts:
                await connection.execute(
                    "SELECT add_usage($1, 0, $2)",
                    drift.organization_id,
                    drift.actual - drift.counted,
                )
            # Their quotas are shared out anew at the next reservation, from the sum.
            await connection.execute(
                "UPDATE usage_shards SET basis = NULL WHERE organization_id = ANY($1::uuid[])",
                [drift.organization_id for drift in drifts],
            )
    return drifts
