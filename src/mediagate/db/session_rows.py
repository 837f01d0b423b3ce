"""Sessions (the CLI's, and those a product's backend names) and the users uploads are made by."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mediagate.db.engine import pool
from mediagate.db.tables import UploadSession, User


async def ensure_user(user_id: uuid.UUID, organization_id: uuid.UUID) -> None:
    await User.insert(User(id=user_id, organization_id=organization_id)).on_conflict(
        action="DO NOTHING"
    )


async def create_session(
    organization_id: uuid.UUID, session_id: uuid.UUID | None = None
) -> uuid.UUID:
    session = UploadSession(id=session_id or uuid.uuid4(), organization_id=organization_id)
    await UploadSession.insert(session)
    return uuid.UUID(str(session.id))


async def delete_session(session_id: uuid.UUID) -> None:
    """The session and (by cascade) its media rows; audit events are kept."""
    await UploadSession.delete().where(UploadSession.id == session_id)


async def session_organization(session_id: uuid.UUID) -> uuid.UUID | None:
    row = (
        await UploadSession.select(UploadSession.organization_id)
        .where(UploadSession.id == session_id)
        .first()
    )
    return None if row is None else row["organization_id"]


async def session_item_count(session_id: uuid.UUID) -> int:
    row = (
        await UploadSession.select(UploadSession.item_count)
        .where(UploadSession.id == session_id)
        .first()
    )
    return 0 if row is None else int(row["item_count"])


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: uuid.UUID
    organization_id: uuid.UUID
    external_id: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    closed_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> SessionRecord:
        metadata = row["metadata"]
        return cls(
            id=row["id"],
            organization_id=row["organization_id"],
            external_id=row["external_id"],
            metadata=None if metadata is None else json.loads(metadata),
            created_at=row["created_at"],
            closed_at=row["closed_at"],
        )


_SESSION_COLUMNS = (
    "id, organization_id, external_id, metadata::text AS metadata, created_at, closed_at"
)

# Of two calls with one external id, the second finds the first's row: the insert waits
# on the unique index for the first to commit, then does nothing, and the select sees it.
_CREATE_OWNED = f"""
WITH inserted AS (
  INSERT INTO garage_sessions (id, organization_id, external_id, metadata, created_at)
  VALUES (gen_random_uuid(), $1, $2, $3::jsonb, now())
  ON CONFLICT (organization_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
  RETURNING {_SESSION_COLUMNS}
)
SELECT * FROM inserted
UNION ALL
SELECT {_SESSION_COLUMNS} FROM garage_sessions
WHERE organization_id = $1 AND external_id = $2 AND NOT EXISTS (SELECT 1 FROM inserted)
"""


async def create_owned_session(
    organization_id: uuid.UUID, external_id: str | None, metadata: str | None
) -> SessionRecord:
    """The organization's session of `external_id`, made now unless it exists (None:
    always a new one)."""
    async with pool().acquire() as connection:
        row = await connection.fetchrow(_CREATE_OWNED, organization_id, external_id, metadata)
        if row is None:  # inserted by a transaction that committed after ours began
            row = await connection.fetchrow(_CREATE_OWNED, organization_id, external_id, metadata)
    assert row is not None
    return SessionRecord.from_row(row)


async def find_session(organization_id: uuid.UUID, session_id: uuid.UUID) -> SessionRecord | None:
    row = await pool().fetchrow(
        f"SELECT {_SESSION_COLUMNS} FROM garage_sessions WHERE id = $1 AND organization_id = $2",
        session_id,
        organization_id,
    )
    return None if row is None else SessionRecord.from_row(row)


async def close_session(organization_id: uuid.UUID, session_id: uuid.UUID) -> SessionRecord | None:
    """Closed now, or when it was closed before; None when it is not the organization's."""
    row = await pool().fetchrow(
        f"""
        UPDATE garage_sessions SET closed_at = COALESCE(closed_at, now())
        WHERE id = $1 AND organization_id = $2 RETURNING {_SESSION_COLUMNS}
        """,
        session_id,
        organization_id,
    )
    return None if row is None else SessionRecord.from_row(row)


async def session_page(
    organization_id: uuid.UUID,
    external_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[SessionRecord]:
    """The organization's sessions oldest first, after the cursor's (created_at, id)."""
    after_time, after_id = after or (datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
    rows = await pool().fetch(
        f"""
        SELECT {_SESSION_COLUMNS} FROM garage_sessions
        WHERE organization_id = $1 AND ($2::text IS NULL OR external_id = $2)
          AND (created_at, id) > ($3, $4)
        ORDER BY created_at, id LIMIT $5
        """,
        organization_id,
        external_id,
        after_time,
        after_id,
        limit,
    )
    return [SessionRecord.from_row(row) for row in rows]


async def media_counts(session_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """How many items of each status every one of these sessions holds."""
    rows = await pool().fetch(
        """
        SELECT session_id, status, count(*) AS n FROM session_media
        WHERE session_id = ANY($1::uuid[]) GROUP BY session_id, status
        """,
        session_ids,
    )
    counts: dict[uuid.UUID, dict[str, int]] = {session_id: {} for session_id in session_ids}
    for row in rows:
        counts[row["session_id"]][row["status"]] = row["n"]
    return counts


async def session_external_id(session_id: uuid.UUID) -> str | None:
    return await pool().fetchval(  # type: ignore[no-any-return]
        "SELECT external_id FROM garage_sessions WHERE id = $1", session_id
    )
