"""A transaction whose server connection dies gives its connection back, and a pool
still lent out is closed anyway, at its deadline."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from piccolo.engine.postgres import PostgresEngine

from mediagate.config import Settings
from mediagate.db import engine as db_engine
from mediagate.db.tables import SessionMedia

# More than the session's pool holds (4): one connection lost per failure would leave
# the last rounds waiting for ever.
ROUNDS = 6


async def _terminate(settings: Settings, pid: int) -> None:
    other = await asyncpg.connect(settings.database.url)
    try:
        await other.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await other.close()


async def test_a_transaction_whose_connection_dies_gives_it_back(
    settings: Settings, database: None
) -> None:
    engine = SessionMedia._meta.db
    assert isinstance(engine, PostgresEngine)
    for _ in range(ROUNDS):
        async with asyncio.timeout(30):
            with pytest.raises(Exception) as raised:
                async with db_engine.transaction():
                    rows = await SessionMedia.raw("SELECT pg_backend_pid() AS pid")
                    await _terminate(settings, rows[0]["pid"])
                    await SessionMedia.raw("SELECT 1")
        assert db_engine.is_unavailable(raised.value), raised.value
        assert engine.current_transaction.get() is None
    async with asyncio.timeout(30):
        assert await db_engine.pool().fetchval("SELECT 1") == 1
        assert await SessionMedia.raw("SELECT 2 AS n") == [{"n": 2}]


async def test_closing_a_pool_with_a_connection_never_given_back_ends_at_its_deadline(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_engine, "CLOSE_SECONDS", 0.5)
    engine = PostgresEngine(config={"dsn": settings.database.url}, log_queries=False)
    await db_engine.start_pool(engine, 2)
    pool = engine.pool
    assert pool is not None
    held = await pool.acquire()
    async with asyncio.timeout(30):
        await pool.close()
    with pytest.raises(asyncpg.InterfaceError):  # cut off: no longer the caller's
        await held.fetchval("SELECT 1")
