"""Exchanges and queues, declared identically by the API, the worker and MinIO's config.

media queue <- bucket-events exchange (MinIO publishes here)
            <- default exchange (confirmUpload publishes jobs by queue name)
media queue --(delay)--> retry queues --(TTL expiry)--> media queue
anything that cannot be handled ends in the dead-letter queue, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from mediagate.config import Settings


# The same flags as MinIO's AMQP target (deploy/minio/minio.env): MinIO re-declares the
# exchange on every publish, and a declaration with other flags fails.
@dataclass(frozen=True, slots=True)
class ExchangeFlags:
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False


BUCKET_EVENTS_EXCHANGE_FLAGS = ExchangeFlags()


def dead_letter_queue_name(settings: Settings) -> str:
    return f"{settings.broker.media_queue}.dead"


def retry_queue_name(settings: Settings, delay_ms: int) -> str:
    return f"{settings.broker.media_queue}.retry.{delay_ms}ms"


async def declare(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    """Declare everything; returns the media queue to consume from."""
    bucket_events = await channel.declare_exchange(
        settings.broker.events_exchange,
        type=aio_pika.ExchangeType(settings.broker.events_exchange_type),
        durable=BUCKET_EVENTS_EXCHANGE_FLAGS.durable,
        auto_delete=BUCKET_EVENTS_EXCHANGE_FLAGS.auto_delete,
        internal=BUCKET_EVENTS_EXCHANGE_FLAGS.internal,
    )
    dead = await channel.declare_queue(dead_letter_queue_name(settings), durable=True)
    media = await channel.declare_queue(
        settings.broker.media_queue,
        durable=True,
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead.name,
        },
    )
    await media.bind(bucket_events, routing_key=settings.broker.events_routing_key)
    for delay_ms in settings.retry.delays_ms:
        await channel.declare_queue(
            retry_queue_name(settings, delay_ms),
            durable=True,
            arguments={
                "x-message-ttl": delay_ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": media.name,
            },
        )
    return media
