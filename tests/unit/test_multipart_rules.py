"""How a declared size is cut into parts, and which parts may complete an upload."""

from __future__ import annotations

import pytest

from mediagate.domain.multipart import (
    MAX_PARTS,
    Part,
    check_part_numbers,
    completion_problem,
    part_count,
    part_size_for,
)
from mediagate.errors import BadUserInput

MIB = 1024 * 1024


@pytest.mark.parametrize("size", [1, 5 * MIB, 2 * 1024 * MIB, 4000 * MIB, 50 * 1024 * MIB])
def test_parts_are_at_least_the_preferred_size_and_at_most_max_parts(size: int) -> None:
    part_size = part_size_for(size, 16 * MIB)
    assert part_size >= 16 * MIB and part_size % MIB == 0
    assert part_count(size, part_size) <= MAX_PARTS


def _stored(*sizes: int) -> list[Part]:
    return [Part(number, f'"etag{number}"', size) for number, size in enumerate(sizes, 1)]


def _claimed(count: int) -> list[Part]:
    return [Part(number, f"etag{number}") for number in range(1, count + 1)]


def test_the_declared_parts_complete() -> None:
    assert completion_problem(_claimed(3), _stored(10, 10, 4), 24, 10) is None


@pytest.mark.parametrize(
    ("claimed", "stored", "problem"),
    [
        (_claimed(2), _stored(10, 10, 4), "1 to 3"),
        (_claimed(3)[::-1], _stored(10, 10, 4), "1 to 3"),
        (_claimed(3), _stored(10, 10), "part 3 has not been uploaded"),
        ([*_claimed(2), Part(3, "other")], _stored(10, 10, 4), "part 3's ETag"),
        (_claimed(3), _stored(10, 9, 5), "part 2 is 9 bytes"),
        (_claimed(3), _stored(10, 10, 5), "part 3 is 5 bytes; it must be 4"),
    ],
)
def test_parts_that_do_not_make_the_declared_object_are_refused(
    claimed: list[Part], stored: list[Part], problem: str
) -> None:
    found = completion_problem(claimed, stored, 24, 10)
    assert found is not None and problem in found


def test_part_numbers_are_checked_and_deduplicated() -> None:
    assert check_part_numbers([3, 1, 3], 3) == [1, 3]
    for numbers, count in (([], 3), ([0], 3), ([4], 3), (list(range(1, 258)), 300)):
        with pytest.raises(BadUserInput):
            check_part_numbers(numbers, count)
