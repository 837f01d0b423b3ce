"""Operator actions: queue uploads whose scan failed for another try; purge a session."""

from __future__ import annotations

import logging
import uuid

from mediagate.db import media_rows as repo
from mediagate.db import session_rows
from mediagate.domain import keys
from mediagate.domain.audit import Actor
from mediagate.domain.status import IN_FLIGHT, MediaStatus
from mediagate.errors import Conflict, NotFound
from mediagate.services.uploads import Publisher, delete_objects, queue_for_processing
from mediagate.storage.object_store import ObjectStore

log = logging.getLogger(__name__)


async def requeue_scan_failed(store: ObjectStore, publisher: Publisher, limit: int) -> int:
    """SCAN_FAILED uploads whose original is still stored go back to UPLOADED with a job.

    Returns how many were queued.
    """
    queued = 0
    for record in await repo.with_status(MediaStatus.SCAN_FAILED, limit):
        if await store.head(record.file_key) is None:
            log.warning("cannot requeue: the original is gone", extra={"key": record.file_key})
            continue
        moved = await queue_for_processing(
            publisher,
            record,
            only_from=MediaStatus.SCAN_FAILED,
            actor=Actor.operator("requeue-failed"),
            rejection_reason=None,
        )
        if moved is not None:
            queued += 1
    return queued


async def purge_session(store: ObjectStore, session_id: uuid.UUID) -> int:
    """Everything of a session goes: each item is marked DELETED (audited, by the
    operator), every object under the session's prefixes is removed, then the session
    and its rows. The audit events stay until their retention ends. Refused while a
    worker holds one of its items. Returns how many items it had."""
    if await session_rows.session_organization(session_id) is None:
        raise NotFound("session not found")
    records = await repo.list_session_media(session_id, None)
    busy = [record.id for record in records if record.status in IN_FLIGHT]
    if busy:
        raise Conflict(f"{len(busy)} item(s) are being processed; purge once they are done")
    actor = Actor.operator("purge")
    for record in records:
        if record.status is not MediaStatus.DELETED:
            await repo.transition(record.id, MediaStatus.DELETED, actor=actor)
        await delete_objects(store, record)
    # Objects no row knows of (a PUT after its row was purged, an orphaned output).
    strays = 0
    for prefix in (keys.UPLOADS_PREFIX, keys.PROCESSED_PREFIX):
        strays += await store.delete_prefix(f"{prefix}{session_id}/")
    await session_rows.delete_session(session_id)
    log.info(
        "session purged",
        extra={"session_id": str(session_id), "items": len(records), "stray_objects": strays},
    )
    return len(records)
