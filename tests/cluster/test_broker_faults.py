"""A three-node RabbitMQ cluster with quorum queues, nodes lost under load: nothing lost,
nothing processed twice, the API answering throughout."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from mediagate.config import Settings, load_settings
from mediagate.db.engine import pool
from mediagate.events.topology import dead_letter_queue_name
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.daemons import ServedApi, serve_api
from tests.support.flow import burst, upload
from tests.support.outcomes import all_completed, completed_once_each, statuses
from tests.support.rabbit_cluster import Cluster, Node
from tests.support.worker_process import WorkerProcess, wait_until

PHOTO = media.fixture("landscape_4.jpg")
CLIENT_TASKS = 16


@pytest.fixture
def cluster_env(env: dict[str, str], cluster: Cluster) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {
        **env,
        "AMQP_URL": cluster.amqp_url,
        "QUEUE_TYPE": "quorum",
        "AMQP_PUBLISH_TIMEOUT": "15",
        "MEDIA_QUEUE": f"mediagate.cluster.{run}",
        "BUCKET_EVENTS_EXCHANGE": f"mediagate.cluster.{run}.events",
        "MAX_PENDING_UPLOADS_PER_USER": "1000",
    }


def _on(node: Node, cluster_env: dict[str, str]) -> Settings:
    return load_settings({**cluster_env, "AMQP_URL": node.url})


async def _consumers(node: Node, queue: str) -> int:
    connection = await aio_pika.connect(node.url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count or 0


async def _messages(node: Node, queue: str) -> int:
    connection = await aio_pika.connect(node.url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


@pytest.fixture
async def stack(
    cluster_env: dict[str, str],
    cluster: Cluster,
    clamd: daemons.Clamd,
    store: ObjectStore,
    api: httpx.AsyncClient,
    tmp_path: Path,
) -> AsyncIterator[tuple[ServedApi, list[WorkerProcess]]]:
    """`mediagate serve` and two `mediagate worker`s on the cluster."""
    settings = load_settings(cluster_env)
    with serve_api(cluster_env, "--workers", "1", log=tmp_path / "api.log") as served:
        workers = [WorkerProcess(cluster_env), WorkerProcess(cluster_env)]
        for worker in workers:
            worker._spawn()

        async def consuming() -> bool:
            live = next(n for n in cluster.nodes if n.process and n.process.poll() is None)
            return await _consumers(live, settings.broker.media_queue) >= 2

        await wait_until(consuming, "the workers never consumed")
        try:
            yield served, workers
        finally:
            for worker in workers:
                worker.stop()


async def _burst(
    api_url: str, tenant: Tenant, count: int, midway: Callable[[], Awaitable[None]]
) -> list[dict[str, Any]]:
    """`count` uploads from CLIENT_TASKS client tasks; `midway` runs beside them."""
    done: list[dict[str, Any]] = []

    async def upload_one(client: httpx.AsyncClient) -> None:
        done.append(await upload(client, tenant, PHOTO))

    await burst(api_url, count, CLIENT_TASKS, upload_one, midway)
    return done


async def test_the_work_queue_leader_killed_under_load_loses_nothing(
    stack: tuple[ServedApi, list[WorkerProcess]],
    cluster: Cluster,
    cluster_env: dict[str, str],
    tenant: Tenant,
    store: ObjectStore,
) -> None:
    served, _ = stack
    settings = load_settings(cluster_env)
    queue = settings.broker.media_queue
    leader = cluster.queue_leader(queue)
    killed_at: list[float] = []

    async def kill_the_leader() -> None:
        async def some_completed() -> bool:
            return (await statuses(tenant.session_id)).get("COMPLETED", 0) >= 30

        await wait_until(some_completed, "nothing completed before the kill", timeout=120)
        leader.kill()
        killed_at.append(time.time())

    photos = 200
    confirmed = await _burst(served.url, tenant, photos, kill_the_leader)
    assert len(confirmed) == photos, "every confirmUpload was answered, during the kill too"
    await all_completed(tenant.session_id, photos)
    await completed_once_each(tenant.session_id, store)

    survivor = next(node for node in cluster.nodes if node is not leader)
    assert cluster.queue_leader(queue) is not leader
    assert await _messages(survivor, dead_letter_queue_name(settings)) == 0
    # Work resumed within seconds: no long gap between completions after the kill.
    times = sorted(
        row[0].timestamp()
        for row in await pool().fetch(
            "SELECT processed_at FROM session_media WHERE session_id = $1", tenant.session_id
        )
    )
    after = [moment for moment in times if moment >= killed_at[0]]
    gaps = [b - a for a, b in zip([killed_at[0], *after], after, strict=False)]
    assert after and max(gaps) < 10, f"work stalled {max(gaps):.1f} s after the kill"

    leader.start()  # it rejoins with its data: the next test has three nodes again
    leader.await_startup()


async def test_a_node_partitioned_away_and_back_loses_nothing(
    stack: tuple[ServedApi, list[WorkerProcess]],
    cluster: Cluster,
    cluster_env: dict[str, str],
    tenant: Tenant,
    store: ObjectStore,
) -> None:
    served, _ = stack
    queue = load_settings(cluster_env).broker.media_queue
    leader = cluster.queue_leader(queue)

    async def partition_and_heal() -> None:
        async def some_completed() -> bool:
            return (await statuses(tenant.session_id)).get("COMPLETED", 0) >= 10

        await wait_until(some_completed, "nothing completed before the partition", timeout=120)
        await asyncio.to_thread(leader.ctl, "stop_app")
        await asyncio.to_thread(leader.ctl, "start_app")

    photos = 60
    confirmed = await _burst(served.url, tenant, photos, partition_and_heal)
    assert len(confirmed) == photos
    await all_completed(tenant.session_id, photos)
    await completed_once_each(tenant.session_id, store)
    survivor = next(node for node in cluster.nodes if node is not leader)
    settings = _on(survivor, cluster_env)
    assert await _messages(survivor, dead_letter_queue_name(settings)) == 0
