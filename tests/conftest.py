"""Session harness: a fresh PostgreSQL database, the S3 server, RabbitMQ names of our own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from mediagate.api.app import create_app
from mediagate.config import Settings, load_settings
from mediagate.db import engine as db_engine
from mediagate.processing.images import reuse_image_memory
from mediagate.processing.isolation import DecoderPool
from mediagate.storage.object_store import ObjectStore
from mediagate.storage.setup import setup_storage
from tests.support import daemons
from tests.support.api import Tenant, in_process, lifespan_in_own_task, new_tenant
from tests.support.environment import delete_handed_out, delete_queues, make_env
from tests.support.rabbit_cluster import Cluster, rabbit_cluster


@pytest.fixture(scope="session", autouse=True)
async def broker_left_clean() -> AsyncIterator[None]:
    """The machine's broker as the session found it: every queue the tests declared on it
    goes at the end (tests/support/environment.py says why)."""
    yield
    await delete_handed_out()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with daemons.s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    url = await daemons.create_database()
    yield url
    await daemons.drop_database(url)


@pytest.fixture(scope="session")
def env(database_url: str, s3_endpoint: str) -> dict[str, str]:
    return make_env(database_url, s3_endpoint)


@pytest.fixture(scope="session")
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[None]:
    engine = db_engine.bind_engine(settings)
    await db_engine.start_pool(engine, 4)
    assert await db_engine.migrate()
    yield
    await engine.close_connection_pool()


@pytest.fixture(scope="session")
def clamd(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[daemons.Clamd]:
    """clamd from the shipped configuration with the test signature database."""
    daemon = daemons.Clamd(tmp_path_factory.mktemp("clamd"), settings.scanner.port)
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def decoders() -> Iterator[DecoderPool]:
    """Decoder processes as the worker runs them, shared by the in-process pipelines."""
    pool = DecoderPool(2, initializer=reuse_image_memory)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def store(settings: Settings) -> ObjectStore:
    setup_storage(settings, bucket_events=False, require_tls=False)
    return ObjectStore(settings)


@pytest.fixture(scope="session")
async def api(
    settings: Settings, database: None, store: ObjectStore
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in-process (ASGI), with its lifespan: real database, broker and store."""
    app = create_app(settings)
    async with lifespan_in_own_task(app), in_process(app, "http://mediagate") as client:
        yield client
    await delete_queues(settings)


@pytest.fixture
async def tenant(settings: Settings, database: None) -> Tenant:
    return await new_tenant(settings)


@pytest.fixture
async def other_tenant(settings: Settings, database: None) -> Tenant:
    return await new_tenant(settings)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three RabbitMQ nodes beside the machine's broker (started for the tests that ask)."""
    with rabbit_cluster(tmp_path_factory.mktemp("rabbit")) as started:
        yield started
