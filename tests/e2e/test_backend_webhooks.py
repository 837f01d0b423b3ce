"""The product's backend hears outcomes from real processes: `mediagate serve` takes its
service token, `mediagate worker` delivers; the receiver is a real server on loopback.
Nothing is lost when the worker dies mid-delivery or the receiver is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from mediagate.config import Settings, load_settings
from mediagate.db.engine import pool
from mediagate.domain.status import MediaStatus
from mediagate.domain.webhooks import new_secret
from mediagate.services.webhooks import configure_endpoint_for_all
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.api import service_token as backend_token
from tests.support.daemons import ServedApi, free_port, serve_api
from tests.support.flow import drain_jobs
from tests.support.readback import row, stage
from tests.support.receiver import Reply, receiving
from tests.support.webhooks import arrivals, create_endpoint, deliveries, verify
from tests.support.worker_process import WorkerProcess, wait_for_status, wait_until

# Retries every second for three minutes: long enough to outlast the receiver's outage.
SCHEDULE = ",".join(["1"] * 180)


@pytest.fixture(scope="module")
def hook_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "WEBHOOK_TIMEOUT": "2",
        "WEBHOOK_RETRY_SCHEDULE": SCHEDULE,
    }


@pytest.fixture(scope="module")
def served(hook_env: dict[str, str], database: None, store: ObjectStore) -> Iterator[ServedApi]:
    with serve_api(hook_env) as api:
        yield api


@pytest.fixture
async def client(served: ServedApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        yield http


@pytest.fixture
async def worker(
    hook_env: dict[str, str], settings: Settings, clamd: daemons.Clamd
) -> AsyncIterator[WorkerProcess]:
    await drain_jobs(settings)
    process = WorkerProcess(hook_env)
    await process.start(settings)
    yield process
    process.stop()


async def _delivery_state(endpoint_id: str) -> list[str]:
    rows = await pool().fetch(
        "SELECT state FROM webhook_deliveries WHERE endpoint_id = $1", endpoint_id
    )
    return [r["state"] for r in rows]


async def test_a_worker_killed_mid_delivery_delivers_once_afterwards(
    client: httpx.AsyncClient,
    worker: WorkerProcess,
    hook_env: dict[str, str],
    settings: Settings,
    tenant: Tenant,
) -> None:
    backend = backend_token(settings, tenant)
    with receiving() as receiver:
        endpoint, secret = await create_endpoint(client, backend, receiver.url)
        receiver.script = [Reply(hold=60)]  # the first attempt is held open: never answered
        key = await stage(client, tenant, media.fixture("landscape_3.jpg"), "p.jpg", "image/jpeg")
        record = await wait_for_status(key, MediaStatus.COMPLETED)
        await arrivals(receiver, 1, id=str(record.id))
        worker.kill()
        successor = WorkerProcess(hook_env)
        await successor.start(settings)
        try:
            received = await arrivals(receiver, 2, timeout=90, id=str(record.id))
            await wait_until(
                lambda: _all_delivered(endpoint), "the delivery was never recorded", 30
            )
        finally:
            successor.stop()
    assert (
        len(received) == 2
        and received[0].headers["webhook-id"] == received[1].headers["webhook-id"]
    )
    verify(secret, received[1])
    log = await deliveries(client, backend, endpoint)
    assert [n["httpStatus"] for n in log] == [200], "one recorded attempt: the one that landed"


async def _all_delivered(endpoint_id: str) -> bool:
    states = await _delivery_state(endpoint_id)
    return bool(states) and set(states) == {"delivered"}


async def test_a_receiver_down_while_100_uploads_complete_gets_all_100(
    client: httpx.AsyncClient,
    worker: WorkerProcess,
    settings: Settings,
    tenant: Tenant,
) -> None:
    backend = backend_token(settings, tenant)
    port = free_port()
    with receiving(port) as receiver:  # up only to register
        endpoint, secret = await create_endpoint(client, backend, receiver.url)
    photo = media.image_bytes("PNG", (96, 64))
    keys = await asyncio.gather(
        *(stage(client, tenant, photo, f"{n}.png", "image/png") for n in range(100))
    )
    ids = set()
    for key in keys:
        record = await wait_for_status(key, MediaStatus.COMPLETED, MediaStatus.REJECTED)
        assert record.status is MediaStatus.COMPLETED, record.rejection_reason
        ids.add(str(record.id))
    failed = [n for n in await deliveries(client, backend, endpoint) if n["error"]]
    assert failed, "the receiver was down: attempts failed meanwhile"
    assert set(await _delivery_state(endpoint)) == {"pending"}

    with receiving(port) as receiver:
        await wait_until(lambda: _all_delivered(endpoint), "not all delivered", 120)
        received = receiver.snapshot()
    delivered = {verify(secret, r)["data"]["id"] for r in received}
    assert delivered == ids
    assert len(await _delivery_state(endpoint)) == 100


async def test_webhook_url_hears_every_organization(
    client: httpx.AsyncClient,
    hook_env: dict[str, str],
    settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
    clamd: daemons.Clamd,
    tmp_path: Path,
) -> None:
    secret = new_secret()
    with receiving() as receiver:
        configured = {**hook_env, "WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": secret}
        await drain_jobs(settings)
        single_tenant = WorkerProcess(configured)
        await single_tenant.start(settings)
        try:
            keys = [
                await stage(client, who, media.image_bytes("PNG"), "a.png", "image/png")
                for who in (tenant, other_tenant)
            ]
            ids = [str((await wait_for_status(k, MediaStatus.COMPLETED)).id) for k in keys]
            for media_id in ids:
                (received,) = await arrivals(receiver, 1, id=media_id)
                assert verify(secret, received)["type"] == "media.completed"
        finally:
            single_tenant.stop()
            await configure_endpoint_for_all(load_settings(hook_env))
    assert (await row(keys[0])).status is MediaStatus.COMPLETED
