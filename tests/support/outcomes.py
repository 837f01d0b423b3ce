"""What became of a session's uploads: rows by status, and that each was processed once."""

from __future__ import annotations

import uuid

from mediagate.db.engine import pool
from mediagate.storage.object_store import ObjectStore
from tests.support.worker_process import wait_until


async def statuses(session_id: uuid.UUID) -> dict[str, int]:
    rows = await pool().fetch(
        "SELECT status::text, count(*) FROM session_media WHERE session_id = $1 GROUP BY 1",
        session_id,
    )
    return {row[0]: row[1] for row in rows}


async def all_completed(session_id: uuid.UUID, count: int, timeout: float = 300) -> None:
    async def completed() -> bool:
        return (await statuses(session_id)).get("COMPLETED", 0) >= count

    await wait_until(completed, f"not all {count} uploads completed", timeout=timeout)


async def completed_once_each(session_id: uuid.UUID, store: ObjectStore) -> None:
    """One COMPLETED audit event and one processed object per upload, nothing else."""
    found = await statuses(session_id)
    assert set(found) == {"COMPLETED"}, found
    twice = await pool().fetchval(
        "SELECT count(*) FROM (SELECT media_id FROM audit_events WHERE session_id = $1"
        " AND action = 'status_changed' AND to_status = 'COMPLETED'"
        " GROUP BY media_id HAVING count(*) <> 1) AS t",
        session_id,
    )
    assert twice == 0
    listed = store.client.list_objects(
        store.bucket, prefix=f"processed/{session_id}/", recursive=True
    )
    assert sum(1 for _ in listed) == found["COMPLETED"]
