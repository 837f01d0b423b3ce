"""The connection pool serves callers in the order they asked."""

from __future__ import annotations

import asyncio

from piccolo.engine.postgres import PostgresEngine

from mediagate.config import Settings
from mediagate.db import engine as db_engine

CALLERS = 300


async def test_connections_go_to_callers_in_order_of_arrival(settings: Settings) -> None:
    # asyncpg's own pool lets newcomers overtake woken waiters: on this workload,
    # dozens of callers are served out of turn in most runs.
    engine = PostgresEngine(config={"dsn": settings.database.url}, log_queries=False)
    await db_engine.start_pool(engine, 2)
    pool = engine.pool
    assert pool is not None
    arrivals: list[int] = []
    served: list[int] = []

    async def caller(number: int) -> None:
        arrivals.append(number)
        async with pool.acquire() as connection:
            served.append(number)
            assert await connection.fetchval("SELECT $1::int", number) == number

    callers = []
    try:
        # Both connections open first: a caller whose connection is still being
        # opened is not out of turn.
        await asyncio.gather(pool.fetchval("SELECT 1"), pool.fetchval("SELECT 1"))
        for number in range(CALLERS):
            callers.append(asyncio.create_task(caller(number)))
            await asyncio.sleep(0)  # a newcomer arrives on every turn of the loop
        await asyncio.gather(*callers)
    finally:
        await engine.close_connection_pool()
    assert len(served) == CALLERS
    assert served == arrivals


async def test_a_cancelled_waiter_gives_its_turn_to_the_next(settings: Settings) -> None:
    engine = PostgresEngine(config={"dsn": settings.database.url}, log_queries=False)
    await db_engine.start_pool(engine, 1)
    pool = engine.pool
    assert pool is not None
    try:
        held = await pool.acquire()
        cancelled = asyncio.create_task(pool.fetchval("SELECT 1"))
        waiting = asyncio.create_task(pool.fetchval("SELECT 2"))
        await asyncio.sleep(0)  # both queue behind the held connection
        cancelled.cancel()
        await pool.release(held)
        assert await asyncio.wait_for(waiting, 30) == 2
        assert cancelled.cancelled()
        assert await pool.fetchval("SELECT 3") == 3  # no turn was lost
    finally:
        await engine.close_connection_pool()
