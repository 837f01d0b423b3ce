"""The one PostgreSQL engine (with its pool), bound to every table at start-up."""

from __future__ import annotations

import os

import asyncpg
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration
from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

from mediagate.config import Settings
from mediagate.db import piccolo_conf
from mediagate.db.piccolo_app import APP_NAME
from mediagate.db.tables import TABLES


def bind_engine(settings: Settings) -> PostgresEngine:
    """Create the engine from the settings and make every table (and Piccolo) use it.

    Every commit is durable (synchronous_commit as the server sets it): a URL handed to
    a client or an alt text confirmed must survive a database crash.
    """
    engine = PostgresEngine(config={"dsn": settings.database_url}, log_queries=False)
    os.environ["PICCOLO_CONF"] = piccolo_conf.__name__
    piccolo_conf.DB = engine
    tables: tuple[type[Table], ...] = (*TABLES, Migration)
    for table in tables:
        table._meta.db = engine
    return engine


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """asyncpg still rolls back an open transaction on release; this skips its extra
    reset query (RESET ALL, UNLISTEN, unlock all), a round trip per query that our
    sessions do not need: they change no settings, listen to nothing, and release
    their advisory locks themselves."""


async def start_pool(engine: PostgresEngine, size: int) -> None:
    await engine.start_connection_pool(min_size=1, max_size=size, reset=_keep_session)


async def migrate() -> bool:
    """Apply the migrations not yet applied; returns whether all went through."""
    result = await run_forwards(app_name=APP_NAME)
    return result.success
