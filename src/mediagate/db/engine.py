"""The one PostgreSQL engine (with its pool), bound to every table at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from types import TracebackType
from typing import Any

import asyncpg
from piccolo.engine.postgres import PostgresEngine

from mediagate.config import Settings
from mediagate.db.tables import TABLES, SessionMedia
from mediagate.domain.failures import arose_from

log = logging.getLogger(__name__)


# How long shutting down waits for queries still running before it cuts them off.
CLOSE_SECONDS = 10.0


def bind_engine(settings: Settings) -> PostgresEngine:
    """Create the engine from the settings and make every table use it.

    Every commit is durable (synchronous_commit as the server sets it): a URL handed to
    a client or an alt text confirmed must survive a database crash.
    """
    engine = PostgresEngine(config={"dsn": settings.database.url}, log_queries=False)
    for table in TABLES:
        table._meta.db = engine
    return engine


# The server is gone, restarting or refusing connections for now: nothing about the
# request, and it passes once the server is back (the pool opens new connections).
_UNAVAILABLE = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    ConnectionError,
)


def is_unavailable(error: BaseException) -> bool:
    """Whether `error`, or an error it arose from (a lock's release on a lost
    connection fails in turn), says the database cannot be reached now rather than
    that a query failed."""
    return arose_from(error, _says_unavailable)


def _says_unavailable(error: BaseException) -> bool:
    if isinstance(error, asyncpg.exceptions.InterfaceError):
        return "connection is closed" in str(error) or "connection was closed" in str(error)
    # The driver's own state machine, broken by a connection the server dropped mid-query.
    return isinstance(error, (*_UNAVAILABLE, asyncpg.exceptions.InternalClientError))


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """asyncpg still rolls back an open transaction on release; this skips its extra
    reset query (RESET ALL, UNLISTEN, unlock all), a round trip per query that our
    sessions do not need: they change no settings, listen to nothing, and release
    their advisory locks themselves."""


async def start_pool(engine: PostgresEngine, size: int) -> None:
    await engine.start_connection_pool(min_size=1, max_size=size, reset=_keep_session)
    # Piccolo and our queries use only acquire, release, fetch* and close.
    engine.pool = FairPool(engine.pool, size)


class FairPool:
    """asyncpg's pool in arrival order.

    asyncpg gives a released connection to whichever caller asks first, so a newcomer
    can take it from the waiter just woken for it, who then queues again at the back
    (MagicStack/asyncpg#1247). Under load that starves a few requests: at concurrency 64
    they made the API's p99 twice what it is with this FIFO gate in front.
    """

    def __init__(self, pool: asyncpg.Pool, size: int) -> None:
        self._pool = pool
        self._turns = asyncio.Semaphore(size)  # FIFO: a release hands over to the oldest

    def acquire(self) -> _Acquisition:
        """`await pool.acquire()` or `async with pool.acquire() as connection`."""
        return _Acquisition(self)

    async def take(self) -> asyncpg.Connection:
        await self._turns.acquire()
        try:
            return await self._pool.acquire()
        except BaseException:
            self._turns.release()
            raise

    async def release(
        self, connection: asyncpg.Connection, *, timeout: float | None = None
    ) -> None:
        try:
            await self._pool.release(connection, timeout=timeout)
        finally:
            self._turns.release()

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self.acquire() as connection:
            return await connection.fetch(query, *args)  # type: ignore[no-any-return]

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.acquire() as connection:
            return await connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as connection:
            return await connection.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as connection:
            return await connection.execute(query, *args)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Waits CLOSE_SECONDS for the connections in use, then closes them anyway."""
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_SECONDS)
        except TimeoutError:
            log.warning("database connections still in use after %s s: closed", CLOSE_SECONDS)
            self._pool.terminate()


class _Acquisition:
    def __init__(self, pool: FairPool) -> None:
        self._pool = pool
        self._connection: asyncpg.Connection | None = None

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        return self._pool.take().__await__()

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection = await self._pool.take()
        return self._connection

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        await self._pool.release(self._connection)


async def migrate() -> bool:
    """Apply the migrations not yet applied with the tables' engine; returns whether all
    went through."""
    # Imported here: the migration machinery (a code formatter among it) would cost the
    # API and every worker process some 8 MiB they never use.
    from piccolo.apps.migrations.commands.forwards import run_forwards
    from piccolo.apps.migrations.tables import Migration

    from mediagate.db import piccolo_conf
    from mediagate.db.piccolo_app import APP_NAME

    engine = TABLES[0]._meta.db
    assert isinstance(engine, PostgresEngine), "bind the engine first"
    # Piccolo's runner finds the engine through the module PICCOLO_CONF names.
    os.environ["PICCOLO_CONF"] = piccolo_conf.__name__
    piccolo_conf.DB = engine
    Migration._meta.db = engine
    result = await run_forwards(app_name=APP_NAME)
    return result.success


def ddl(*statements: str) -> Callable[[], Awaitable[None]]:
    """A migration step (MigrationManager.add_raw) that runs these statements in order."""

    async def run() -> None:
        from piccolo.engine import engine_finder

        engine = engine_finder()
        assert engine is not None
        for statement in statements:
            await engine.run_ddl(statement)

    return run


def pool() -> Any:
    engine = SessionMedia._meta.db
    assert isinstance(engine, PostgresEngine) and engine.pool is not None, "start the pool first"
    return engine.pool


@contextlib.asynccontextmanager
async def transaction() -> AsyncIterator[None]:
    """Queries awaited inside `async with transaction():` run in one transaction (inside
    another, in that one).

    Piccolo's own leaks its connection when the server goes away mid-transaction: a
    BEGIN, COMMIT or ROLLBACK that fails skips both the release and the reset of the
    current transaction. The pool is then one connection short for good, later queries
    of the task use the released connection, and shutdown waits for ever on the pool.
    This one gives the connection back, and forgets it, whatever fails.
    """
    engine = SessionMedia._meta.db
    assert isinstance(engine, PostgresEngine)
    if engine.current_transaction.get() is not None:
        yield
        return
    # Piccolo's queries find their connection through the current transaction.
    current = engine.transaction()
    async with pool().acquire() as connection, connection.transaction():
        current.connection = connection
        token = engine.current_transaction.set(current)
        try:
            yield
        finally:
            engine.current_transaction.reset(token)
