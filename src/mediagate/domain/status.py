"""The media status machine. Every status change in the database is one of these steps."""

from __future__ import annotations

from enum import StrEnum


class MediaStatus(StrEnum):
    PENDING_UPLOAD = "PENDING_UPLOAD"
    UPLOADED = "UPLOADED"
    SCANNING = "SCANNING"
    SCAN_FAILED = "SCAN_FAILED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    # deleteMedia: the objects are gone, the row stays for its history.
    DELETED = "DELETED"


# The worker never moves these on by itself.
TERMINAL: frozenset[MediaStatus] = frozenset(
    {MediaStatus.COMPLETED, MediaStatus.REJECTED, MediaStatus.SCAN_FAILED, MediaStatus.DELETED}
)

# A worker may hold these: they cannot be deleted until it is done.
IN_FLIGHT: frozenset[MediaStatus] = frozenset(
    {MediaStatus.UPLOADED, MediaStatus.SCANNING, MediaStatus.PROCESSING}
)

# A row in these may still need its original in the store (to process it, or to keep it
# for review); in the others (COMPLETED, REJECTED, DELETED) the original is done with.
NEEDS_ORIGINAL: frozenset[MediaStatus] = IN_FLIGHT | {
    MediaStatus.PENDING_UPLOAD,
    MediaStatus.SCAN_FAILED,
}

# SCANNING and PROCESSING may be re-entered from each other: a job whose worker died
# is started again from the scan, because nothing a dead worker did is trusted.
_NEXT: dict[MediaStatus, frozenset[MediaStatus]] = {
    MediaStatus.PENDING_UPLOAD: frozenset(
        {MediaStatus.UPLOADED, MediaStatus.REJECTED, MediaStatus.DELETED}
    ),
    MediaStatus.UPLOADED: frozenset({MediaStatus.SCANNING, MediaStatus.REJECTED}),
    MediaStatus.SCANNING: frozenset(
        {
            MediaStatus.SCANNING,
            MediaStatus.PROCESSING,
            MediaStatus.REJECTED,
            MediaStatus.SCAN_FAILED,
        }
    ),
    MediaStatus.PROCESSING: frozenset(
        {MediaStatus.SCANNING, MediaStatus.COMPLETED, MediaStatus.REJECTED, MediaStatus.SCAN_FAILED}
    ),
    MediaStatus.COMPLETED: frozenset({MediaStatus.DELETED}),
    MediaStatus.REJECTED: frozenset({MediaStatus.DELETED}),
    # Terminal for the worker; an operator may queue it again (`mediagate requeue-failed`).
    MediaStatus.SCAN_FAILED: frozenset({MediaStatus.UPLOADED, MediaStatus.DELETED}),
    MediaStatus.DELETED: frozenset(),
}


def can_move(current: MediaStatus, target: MediaStatus) -> bool:
    return target in _NEXT[current]


def sources_of(target: MediaStatus) -> frozenset[MediaStatus]:
    """Every status from which `target` may be reached; used as the UPDATE's guard."""
    return frozenset(source for source, targets in _NEXT.items() if target in targets)
