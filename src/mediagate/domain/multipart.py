"""Rules of multipart uploads: how a file is cut into parts, and when a set of parts
may be completed into the object the client declared."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mediagate.errors import BadUserInput

MIB = 1024 * 1024
# S3 allows 10,000 parts; at most 500 keeps completeMultipartUpload's list of parts
# (about 60 bytes each) well inside one request body.
MAX_PARTS = 500
# Part URLs signed in one call (startMultipartUpload, uploadPartUrls).
MAX_URLS_PER_CALL = 256

# Why a multipart item ended REJECTED before any file was assembled: completing it
# afterwards is a conflict, not a confirmation.
ABORTED = "the upload was aborted"
NEVER_COMPLETED = "the multipart upload was not completed before its part URLs expired"
NEVER_ASSEMBLED = frozenset({ABORTED, NEVER_COMPLETED})


def completion_lock(file_key: str) -> str:
    """The lock under which an upload is completed or aborted, by a client or by the
    reconciler: never both at once."""
    return f"multipart:{file_key}"


@dataclass(frozen=True, slots=True)
class Part:
    """A part as the store lists it, or as the client says it sent it (size unknown)."""

    number: int
    etag: str
    size: int = 0


def part_size_for(size: int, preferred: int) -> int:
    """The preferred part size, or the smallest whole MiB that keeps `size` in MAX_PARTS."""
    smallest = -(-size // MAX_PARTS)
    return max(preferred, -(-smallest // MIB) * MIB)


def part_count(size: int, part_size: int) -> int:
    return -(-size // part_size)


def part_length(number: int, size: int, part_size: int) -> int:
    """Bytes part `number` holds: `part_size`, but the last, which holds the rest."""
    return min(part_size, size - (number - 1) * part_size)


def check_part_numbers(numbers: Sequence[int], count: int) -> list[int]:
    """Distinct part numbers of this upload, at most MAX_URLS_PER_CALL of them."""
    if not numbers:
        raise BadUserInput("partNumbers must not be empty", field="partNumbers")
    if len(numbers) > MAX_URLS_PER_CALL:
        raise BadUserInput(
            f"at most {MAX_URLS_PER_CALL} part numbers per call", field="partNumbers"
        )
    if any(not 1 <= number <= count for number in numbers):
        raise BadUserInput(f"part numbers go from 1 to {count}", field="partNumbers")
    return sorted(set(numbers))


def normalise_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


def completion_problem(
    claimed: Sequence[Part], stored: Sequence[Part], declared_size: int, part_size: int
) -> str | None:
    """Why these parts must not be completed into the declared object, or None.

    Every part must be there, as the client says it sent it (same ETag), each of the
    chosen size but the last, and together exactly the declared size.
    """
    count = part_count(declared_size, part_size)
    if [part.number for part in claimed] != list(range(1, count + 1)):
        return f"parts must list part numbers 1 to {count} once each, in order"
    found = {part.number: part for part in stored}
    for part in claimed:
        held = found.get(part.number)
        if held is None:
            return f"part {part.number} has not been uploaded"
        if normalise_etag(held.etag) != normalise_etag(part.etag):
            return f"part {part.number}'s ETag does not match the part stored"
        expected = part_size if part.number < count else declared_size - part_size * (count - 1)
        if held.size != expected:
            return f"part {part.number} is {held.size} bytes; it must be {expected} bytes"
    return None
