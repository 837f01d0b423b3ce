"""A job that runs longer than RabbitMQ's consumer timeout is not taken back from its
worker: on a broker of our own with the timeout at 2 seconds (30 minutes by default), a
job held for longer keeps its delivery acked and its channel open, and ends COMPLETED."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import aio_pika
import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from asyncpg.transaction import Transaction

from mediagate.config import Settings, load_settings
from mediagate.db.media_rows import MediaRecord
from mediagate.domain.status import MediaStatus
from mediagate.events.messages import ProcessJob
from mediagate.events.publisher import JobPublisher
from mediagate.worker.consumer import REASON_HEADER, STOPPED
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.broker import drain
from tests.support.daemons import RabbitNode
from tests.support.environment import own_names
from tests.support.flow import drain_jobs
from tests.support.readback import row, stage
from tests.support.worker_process import WorkerProcess, wait_for_status, wait_until

CONSUMER_TIMEOUT_MS = 2000


@pytest.fixture(scope="module")
def short_timeout_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    if RabbitNode.server_script() is None:
        pytest.skip("rabbitmq-server is not installed, so no broker of our own can start")
    node = RabbitNode(tmp_path_factory.mktemp("rabbit"), CONSUMER_TIMEOUT_MS)
    node.start()
    yield node
    node.stop()


async def _never_ack(_message: AbstractIncomingMessage) -> None:
    pass


async def _broker_takes_back_an_unacked_delivery(node: RabbitNode) -> None:
    """Returns once the broker has closed a channel that held a delivery unacked: any
    delivery older than this one has passed the timeout too."""
    connection = await aio_pika.connect(node.url)
    async with connection:
        channel = await connection.channel()
        closed = asyncio.get_running_loop().create_future()

        def on_close(*_: object) -> None:
            if not closed.done():
                closed.set_result(None)

        channel.close_callbacks.add(on_close)
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"hold"), routing_key=queue.name)
        await queue.consume(_never_ack)
        await asyncio.wait_for(closed, 60)


def _consumer_channel(node: RabbitNode, queue: str) -> str | None:
    for line in node.ctl("list_consumers", "queue_name", "channel_pid").splitlines():
        name, _, channel = line.partition("\t")
        if name == queue:
            return channel.strip()
    return None


async def _no_unacked(node: RabbitNode, queue: str) -> bool:
    return _unacked(node, queue) == 0


def _unacked(node: RabbitNode, queue: str) -> int:
    for line in node.ctl("list_queues", "name", "messages_unacknowledged").splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    raise AssertionError(f"no queue {queue}")


@pytest.fixture
async def row_lock(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(settings.database.url)
    yield connection
    await connection.close()


async def _waiting_on_a_row_lock(connection: asyncpg.Connection) -> bool:
    # The connection is inside the transaction holding the lock, and statistics views
    # keep one snapshot per transaction unless told to take a fresh one.
    await connection.execute("SELECT pg_stat_clear_snapshot()")
    waiting = await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(waiting)


async def _hold_row(connection: asyncpg.Connection, record: MediaRecord) -> Transaction:
    """The job waits on this row lock at its first status change, as long as it is held."""
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("SELECT 1 FROM session_media WHERE id = $1 FOR UPDATE", record.id)
    return transaction


async def _start_held_job(
    worker: WorkerProcess,
    settings: Settings,
    record: MediaRecord,
    connection: asyncpg.Connection,
) -> None:
    """Start the worker, queue the job, and return once it waits on the held row."""
    await worker.start(settings)
    publisher = await JobPublisher.connect(settings)
    await publisher.publish(ProcessJob(record.id, record.file_key, record.session_id))
    await publisher.close()
    await wait_until(lambda: _waiting_on_a_row_lock(connection), "the job never started")


def _on_broker(env: dict[str, str], node: RabbitNode, **overrides: str) -> dict[str, str]:
    return {
        **env,
        "AMQP_URL": node.url,
        "BUCKET_EVENTS_AMQP_URL": node.url,
        **own_names("long"),
        "WORKER_PREFETCH": "1",
        **overrides,
    }


@pytest.mark.parametrize(
    "ack_after", ["0.5", "600"], ids=["acked early, lease held", "acked at the end"]
)
async def test_a_job_longer_than_the_consumer_timeout_is_not_redelivered(
    short_timeout_broker: RabbitNode,
    env: dict[str, str],
    settings: Settings,
    api: httpx.AsyncClient,
    tenant: Tenant,
    clamd: daemons.Clamd,
    row_lock: asyncpg.Connection,
    ack_after: str,
) -> None:
    node = short_timeout_broker
    worker_env = _on_broker(env, node, JOB_ACK_AFTER=ack_after)
    worker_settings = load_settings(worker_env)
    key = await stage(api, tenant, media.fixture("landscape_6.jpg"), "long.jpg", "image/jpeg")
    await drain_jobs(settings)
    record = await row(key)

    transaction = await _hold_row(row_lock, record)
    worker = WorkerProcess(worker_env)
    try:
        await _start_held_job(worker, worker_settings, record, row_lock)
        channel = _consumer_channel(node, worker_settings.broker.media_queue)

        await _broker_takes_back_an_unacked_delivery(node)

        if ack_after == "0.5":
            assert _unacked(node, worker_settings.broker.media_queue) == 0
            assert _consumer_channel(node, worker_settings.broker.media_queue) == channel
        else:  # the broker's rule, which the early ack avoids: the channel is closed

            async def reopened() -> bool:
                found = _consumer_channel(node, worker_settings.broker.media_queue)
                return found is not None and found != channel

            await wait_until(reopened, "the broker never took the delivery back")
        assert (await row(key)).status is MediaStatus.UPLOADED, "the job is still running"
        await transaction.rollback()
        done = await wait_for_status(key, MediaStatus.COMPLETED, MediaStatus.REJECTED)
        assert done.status is MediaStatus.COMPLETED, done.rejection_reason
    finally:
        worker.stop()


async def test_a_leased_job_stopped_with_its_worker_is_queued_again_at_once(
    short_timeout_broker: RabbitNode,
    env: dict[str, str],
    settings: Settings,
    api: httpx.AsyncClient,
    tenant: Tenant,
    clamd: daemons.Clamd,
    row_lock: asyncpg.Connection,
) -> None:
    """Its message was acked: without a new one, the job would wait for the reconciler."""
    worker_env = _on_broker(env, short_timeout_broker, JOB_ACK_AFTER="0.2", SHUTDOWN_GRACE="1")
    worker_settings = load_settings(worker_env)
    key = await stage(api, tenant, media.fixture("landscape_7.jpg"), "stop.jpg", "image/jpeg")
    await drain_jobs(settings)
    record = await row(key)
    transaction = await _hold_row(row_lock, record)
    worker = WorkerProcess(worker_env)
    try:
        await _start_held_job(worker, worker_settings, record, row_lock)
        await wait_until(
            lambda: _no_unacked(short_timeout_broker, worker_settings.broker.media_queue),
            "the job's message was never acked",
        )
        assert worker.terminate() == 0
    finally:
        worker.stop()
        await transaction.rollback()
    (job,) = await drain(worker_settings, worker_settings.broker.media_queue)
    assert json.loads(job.body)["fileKey"] == key
    assert (job.headers or {})[REASON_HEADER] == STOPPED
