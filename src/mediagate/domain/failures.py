"""What an error arose from: the cause behind a failure raised while handling another."""

from __future__ import annotations

from collections.abc import Callable

# Enough for a failed cleanup on top of the failure it was cleaning up after.
CHAIN_DEPTH = 8


def arose_from(error: BaseException, kind: Callable[[BaseException], bool]) -> bool:
    """Whether `error`, or one it was raised from or while handling, is of `kind`."""
    seen: BaseException | None = error
    for _ in range(CHAIN_DEPTH):
        if seen is None:
            return False
        if kind(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
