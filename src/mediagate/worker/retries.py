"""What a job comes to, and the one policy for trying again: which attempt is the last,
which delay queue a retry waits in, when a file that keeps killing workers is parked.

The pipeline decides what happened (an Outcome); the consumer carries it out with
`follow_up`; the reconciler and the pipeline park crashed jobs through `park_if_crashing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mediagate.config import RetrySettings
from mediagate.db import media_rows as repo
from mediagate.db.media_rows import MediaRecord
from mediagate.domain.audit import Actor
from mediagate.domain.status import MediaStatus

# An event whose row is not visible yet is retried this many times before the
# object counts as an orphan.
ORPHAN_RETRIES = 2
# A job found half-done means its worker died (a redelivered message, or a stuck row the
# reconciler finds). After this many, the file is assumed to crash workers (a decoder
# bug it triggers) and is parked.
MAX_CRASHED_ATTEMPTS = 3


class JobResult(StrEnum):
    """What a finished job came to; also the label set of the worker's job counter."""

    COMPLETED = "completed"
    REJECTED = "rejected"
    VIRUS = "virus"
    SCAN_FAILED = "scan_failed"
    # Nothing for this job to do (done already, another worker has it, an orphan).
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Done:
    """Finished with this message: ack it."""

    note: str
    timings: dict[str, float] = field(default_factory=dict)
    result: JobResult = JobResult.SKIPPED


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure: try again later."""

    reason: str
    # Not the file's fault and not worth giving up on (no scratch space): retried at the
    # longest delay for as long as it lasts, never parked.
    until_fixed: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Retries are exhausted or the failure is not understood: park it for an operator."""

    reason: str


Outcome = Done | Retry | DeadLetter


def is_last_attempt(attempt: int, policy: RetrySettings) -> bool:
    """`attempt` counts the earlier tries of the same message."""
    return attempt >= len(policy.delays_ms)


@dataclass(frozen=True, slots=True)
class NextTry:
    delay_ms: int
    attempt: int


def next_try(retry: Retry, attempt: int, policy: RetrySettings) -> NextTry:
    """The delay a retry waits and the attempt it counts as: each attempt waits longer,
    up to the longest delay; one retried until fixed never becomes the last."""
    delays = policy.delays_ms
    next_attempt = attempt + 1
    if retry.until_fixed:
        next_attempt = min(next_attempt, len(delays) - 1)
    return NextTry(delays[min(attempt, len(delays) - 1)], next_attempt)


def parking_reason(crashes: int) -> str:
    return f"processing stopped {crashes} times midway; the file is kept for review"


async def park_if_crashing(record: MediaRecord, actor: Actor) -> str | None:
    """Count that a job on this upload died midway; past MAX_CRASHED_ATTEMPTS the upload
    is parked as SCAN_FAILED (its original kept), and the reason is returned."""
    crashes = await repo.count_crash(record.id)
    if crashes < MAX_CRASHED_ATTEMPTS:
        return None
    reason = parking_reason(crashes)
    await repo.transition(record.id, MediaStatus.SCAN_FAILED, actor=actor, rejection_reason=reason)
    return reason
