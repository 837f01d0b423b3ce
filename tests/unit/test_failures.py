"""Telling an outage from a failure: the cause behind a cleanup that failed in turn."""

from __future__ import annotations

import asyncpg

from mediagate.db.engine import is_unavailable
from mediagate.domain.failures import CHAIN_DEPTH, arose_from
from mediagate.storage.object_store import is_unreachable


def _raised_while_handling(cause: BaseException, depth: int) -> BaseException:
    error = cause
    for step in range(depth):
        try:
            raise RuntimeError(f"cleanup {step} failed") from error
        except RuntimeError as wrapped:
            error = wrapped
    return error


def test_a_lost_connection_behind_a_failed_cleanup_is_an_outage() -> None:
    lost = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
    assert is_unavailable(_raised_while_handling(lost, 1))
    assert is_unreachable(_raised_while_handling(ConnectionRefusedError(), 1))
    assert not is_unavailable(_raised_while_handling(ValueError("a bad row"), 1))
    assert not is_unreachable(ValueError("a bad row"))


def test_the_chain_is_followed_only_so_far() -> None:
    refused = ConnectionRefusedError()
    assert arose_from(_raised_while_handling(refused, CHAIN_DEPTH - 1), lambda e: e is refused)
    assert not arose_from(_raised_while_handling(refused, CHAIN_DEPTH), lambda e: e is refused)
    assert not arose_from(_raised_while_handling(refused, 10_000), lambda e: e is refused)
