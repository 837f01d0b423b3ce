"""How processing says no."""

import errno

# A write refused for want of room: the disk is full, the quota spent, the file limit hit.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class UnacceptableMedia(Exception):
    """The file is not what it claims, is corrupt, or is unsafe to process. Terminal."""


class ScratchUnavailable(Exception):
    """The scratch disk is short or a file on it could not be written: the disk's fault,
    not the file's, so the job is retried until it is fixed, never rejected."""
