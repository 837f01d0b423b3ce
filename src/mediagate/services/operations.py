"""Operator actions: queue uploads whose scan failed for another try."""

from __future__ import annotations

import logging

from mediagate.db import media_repository as repo
from mediagate.domain.status import MediaStatus
from mediagate.events.messages import ProcessJob
from mediagate.services.uploads import Publisher
from mediagate.storage.object_store import ObjectStore

log = logging.getLogger(__name__)


async def requeue_scan_failed(store: ObjectStore, publisher: Publisher, limit: int) -> int:
    """SCAN_FAILED uploads whose original is still stored go back to UPLOADED with a job.

    Returns how many were queued. As in confirmUpload, the job is published inside the
    transaction, so a row is never UPLOADED without its job.
    """
    queued = 0
    for record in await repo.with_status(MediaStatus.SCAN_FAILED, limit):
        if await store.head(record.file_key) is None:
            log.warning("cannot requeue: the original is gone", extra={"key": record.file_key})
            continue
        async with repo.transaction():
            moved = await repo.transition(
                record.id,
                MediaStatus.UPLOADED,
                only_from=MediaStatus.SCAN_FAILED,
                rejection_reason=None,
            )
            if moved is not None:
                await publisher.publish(ProcessJob(record.id, record.file_key, record.session_id))
                queued += 1
    return queued
