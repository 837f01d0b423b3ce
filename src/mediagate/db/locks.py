"""Advisory locks: one process at a time on an upload, or on a task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mediagate.db.engine import pool


@asynccontextmanager
async def advisory_lock(name: str) -> AsyncIterator[bool]:
    """Hold a PostgreSQL advisory lock on `name` (an upload's key, or a task's name) for
    as long as the block runs.

    Yields False when another process holds it. The lock lives on its own connection,
    so a process that dies releases it with its connection, and a redelivery can resume.
    """
    async with pool().acquire() as connection:
        locked = await connection.fetchval(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", name
        )
        try:
            yield bool(locked)
        finally:
            if locked:
                await connection.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", name)
