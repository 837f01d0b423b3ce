"""Session harness: a fresh PostgreSQL database, the S3 server, RabbitMQ names of our own."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import aio_pika
import httpx
import pytest
from litestar import Litestar

from mediagate.api.app import create_app
from mediagate.auth.tokens import issue_token
from mediagate.config import Settings, load_settings
from mediagate.db import engine as db_engine
from mediagate.db import media_repository as repo
from mediagate.domain.principal import Principal
from mediagate.events.topology import dead_letter_queue_name, retry_queue_name
from mediagate.processing.images import reuse_image_memory
from mediagate.processing.isolation import DecoderPool
from mediagate.storage.object_store import ObjectStore
from mediagate.storage.setup import setup_storage
from tests.support import services


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with services.s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    url = await services.create_database()
    yield url
    await services.drop_database(url)


def make_env(database_url: str, s3_endpoint: str, **overrides: str) -> dict[str, str]:
    """A complete environment for mediagate, with RabbitMQ names no other run uses."""
    run = uuid.uuid4().hex[:8]
    env = {
        "DATABASE_URL": database_url,
        "AMQP_URL": services.AMQP_URL,
        "S3_ENDPOINT": s3_endpoint,
        "S3_ACCESS_KEY": "test-access",
        "S3_SECRET_KEY": "test-secret-key",
        "S3_UPLOAD_ACCESS_KEY": "test-upload",
        "S3_UPLOAD_SECRET_KEY": "test-upload-secret-key",
        "S3_BUCKET": f"media-{run}",
        "JWT_SECRET": secrets.token_hex(32),
        "MEDIA_QUEUE": f"mediagate.test.{run}",
        "BUCKET_EVENTS_EXCHANGE": f"mediagate.test.{run}.events",
        "RETRY_DELAYS_MS": "100,200,400",
        "CLAMAV_PORT": str(services.free_port()),
        "CLAMAV_TIMEOUT": "30",
        "VIDEO_TIME_LIMIT": "120",
        "SHUTDOWN_GRACE": "20",
        "LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


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
def clamd(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Clamd]:
    """clamd from the shipped configuration with the test signature database."""
    daemon = services.Clamd(tmp_path_factory.mktemp("clamd"), settings.clamav_port)
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


async def delete_queues(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        names = [settings.media_queue, dead_letter_queue_name(settings)]
        names += [retry_queue_name(settings, delay) for delay in settings.retry_delays_ms]
        for name in names:
            await channel.queue_delete(name)
        await channel.exchange_delete(settings.bucket_events_exchange)


@asynccontextmanager
async def lifespan_in_own_task(app: Litestar) -> AsyncIterator[None]:
    """Run the app's lifespan in one task: its anyio scopes must exit where they entered."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield
    finally:
        stop.set()
        await task


def in_process(app: Litestar, base_url: str) -> httpx.AsyncClient:
    """A client of the app called in this process (ASGI), no server between."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, app)), base_url=base_url)


@pytest.fixture(scope="session")
async def api(
    settings: Settings, database: None, store: ObjectStore
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in-process (ASGI), with its lifespan: real database, broker and store."""
    app = create_app(settings)
    async with lifespan_in_own_task(app), in_process(app, "http://mediagate") as client:
        yield client
    await delete_queues(settings)


@dataclass(frozen=True)
class Tenant:
    """An organization with one user and one session, and that user's token."""

    principal: Principal
    session_id: uuid.UUID
    token: str


async def new_tenant(settings: Settings) -> Tenant:
    principal = Principal(user_id=uuid.uuid4(), organization_id=uuid.uuid4())
    session_id = await repo.create_session(principal.organization_id)
    return Tenant(principal, session_id, issue_token(settings, principal, 600))


@pytest.fixture
async def tenant(settings: Settings, database: None) -> Tenant:
    return await new_tenant(settings)


@pytest.fixture
async def other_tenant(settings: Settings, database: None) -> Tenant:
    return await new_tenant(settings)


async def graphql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    body: dict[str, Any] = response.json()
    return body


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]
