"""A mediagate environment of the tests' own: settings, and RabbitMQ names no other run uses.

The machine's broker is one node shared by every test: its queues are classic ones, and
every queue and exchange a name was handed out for is deleted when the session ends.
A quorum queue holds file handles for as long as it exists, and past some 300 of them
RabbitMQ 3.10 (1,024 handles here) stops accepting connections at all: left behind, one
run's queues would stall the next. Quorum queues are tested where they matter, on the
cluster (tests/cluster) and in tests/worker/test_queue_types.py.
"""

from __future__ import annotations

import secrets
import subprocess
import uuid

import aio_pika

from mediagate.config import Settings
from mediagate.events.topology import dead_letter_queue_name, retry_queue_name
from tests.support import daemons


def make_env(database_url: str, s3_endpoint: str, **overrides: str) -> dict[str, str]:
    """A complete environment for mediagate, with RabbitMQ names no other run uses."""
    env = {
        "DATABASE_URL": database_url,
        "AMQP_URL": daemons.AMQP_URL,
        "S3_ENDPOINT": s3_endpoint,
        "S3_ACCESS_KEY": "test-access",
        "S3_SECRET_KEY": "test-secret-key",
        "S3_UPLOAD_ACCESS_KEY": "test-upload",
        "S3_UPLOAD_SECRET_KEY": "test-upload-secret-key",
        "S3_BUCKET": f"media-{uuid.uuid4().hex[:8]}",
        "JWT_SECRET": secrets.token_hex(32),
        **own_names("test"),
        "QUEUE_TYPE": "classic",
        "RETRY_DELAYS_MS": "100,200,400",
        "CLAMAV_PORT": str(daemons.free_port()),
        "CLAMAV_TIMEOUT": "30",
        "VIDEO_TIME_LIMIT": "120",
        "SHUTDOWN_GRACE": "20",
        "AMQP_PUBLISH_TIMEOUT": "3",
        "LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


async def delete_queues(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel()
        names = [settings.broker.media_queue, dead_letter_queue_name(settings)]
        names += [retry_queue_name(settings, delay) for delay in settings.retry.delays_ms]
        for name in names:
            await channel.queue_delete(name)
        await channel.exchange_delete(settings.broker.events_exchange)


# Every work queue name handed out in this session: its queues all begin with it.
_HANDED_OUT: list[str] = []


def own_names(kind: str) -> dict[str, str]:
    """MEDIA_QUEUE and BUCKET_EVENTS_EXCHANGE that no other run uses, deleted with every
    queue named after them when the session ends."""
    queue = f"mediagate.{kind}.{uuid.uuid4().hex[:8]}"
    _HANDED_OUT.append(queue)
    return {"MEDIA_QUEUE": queue, "BUCKET_EVENTS_EXCHANGE": f"{queue}.events"}


async def delete_handed_out() -> None:
    """Delete, on the machine's broker, every queue and exchange named after a name
    handed out in this session (what a cluster held went with its nodes)."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_queues", "name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    handed_out = tuple(_HANDED_OUT)
    connection = await aio_pika.connect(daemons.AMQP_URL, timeout=30)
    async with connection:
        channel = await connection.channel()
        for queue in listed:
            if queue.startswith(handed_out):
                await channel.queue_delete(queue)
        for queue in handed_out:
            await channel.exchange_delete(f"{queue}.events")
