"""Rows that tests and benches insert straight into the database."""

from __future__ import annotations

from datetime import timedelta

from mediagate.db.media_rows import Bounds

_MAX_INT = 2**31 - 1


def unbounded(max_items: int) -> Bounds:
    """Only the session's bound: no cap on outstanding uploads, no charge, no quota."""
    return Bounds(
        max_items=max_items,
        max_pending=_MAX_INT,
        late_allowance=timedelta(0),
        charge=0,
        default_quota=None,
    )
