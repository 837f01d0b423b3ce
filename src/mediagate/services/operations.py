"""Operator actions: queue uploads whose scan failed for another try."""

from __future__ import annotations

import logging

from mediagate.db import media_repository as repo
from mediagate.domain.audit import Actor
from mediagate.domain.status import MediaStatus
from mediagate.services.uploads import Publisher, queue_for_processing
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
