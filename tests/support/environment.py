"""A mediagate environment of the tests' own: settings, and RabbitMQ names no other run uses."""

from __future__ import annotations

import secrets
import uuid

import aio_pika

from mediagate.config import Settings
from mediagate.events.topology import dead_letter_queue_name, retry_queue_name
from tests.support import daemons


def make_env(database_url: str, s3_endpoint: str, **overrides: str) -> dict[str, str]:
    """A complete environment for mediagate, with RabbitMQ names no other run uses."""
    run = uuid.uuid4().hex[:8]
    env = {
        "DATABASE_URL": database_url,
        "AMQP_URL": daemons.AMQP_URL,
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
