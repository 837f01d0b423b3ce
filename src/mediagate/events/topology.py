"""Exchanges and queues, declared identically by the API, the worker and MinIO's config.

media queue <- bucket-events exchange (MinIO publishes here)
            <- default exchange (confirmUpload publishes jobs by queue name)
media queue --(delay)--> retry queues --(TTL expiry)--> media queue
anything that cannot be handled ends in the dead-letter queue, never dropped.

Quorum queues (`QUEUE_TYPE=quorum`) are replicated across a cluster's nodes. They
dead-letter at least once: a message moves to the next queue only once that queue has
confirmed it, so a retry is never lost between two queues.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from mediagate.config import Settings
from mediagate.events import connection

# A message delivered this many times without an outcome is dead-lettered by the broker
# itself. The pipeline parks a file that keeps killing workers after 3 (its crash count,
# in the database), so this only catches what never reaches the pipeline.
DELIVERY_LIMIT = 20


# The same flags as MinIO's AMQP target (deploy/minio/minio.env): MinIO re-declares the
# exchange on every publish, and a declaration with other flags fails.
@dataclass(frozen=True, slots=True)
class ExchangeFlags:
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False


BUCKET_EVENTS_EXCHANGE_FLAGS = ExchangeFlags()


class QueueMismatch(Exception):
    """A queue exists with other arguments than this configuration declares (its type,
    most often): start-up stops rather than use it as it is."""

    def __init__(self, queue: str, wanted: str, reply: str) -> None:
        current = re.search(r"current is (?:the value )?'?([\w-]+)'?", reply)
        held = "classic" if current is None or current.group(1) == "none" else current.group(1)
        self.queue = queue
        super().__init__(
            f"queue {queue!r} exists as a {held} queue, not {wanted} as QUEUE_TYPE says:"
            f" move its messages with `mediagate queues migrate`, or set QUEUE_TYPE={held}"
            f" (the broker said: {reply})"
        )


def dead_letter_queue_name(settings: Settings) -> str:
    return f"{settings.broker.media_queue}.dead"


def retry_queue_name(settings: Settings, delay_ms: int) -> str:
    return f"{settings.broker.media_queue}.retry.{delay_ms}ms"


def queue_arguments(settings: Settings, dead_letter_to: str | None) -> dict[str, Any]:
    """What a queue of the configured type is declared with; `dead_letter_to`: the queue
    its rejected or expired messages move to."""
    arguments: dict[str, Any] = {}
    if settings.broker.queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
        if dead_letter_to is not None:
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
    if dead_letter_to is not None:
        arguments["x-dead-letter-exchange"] = ""
        arguments["x-dead-letter-routing-key"] = dead_letter_to
    return arguments


def declarations(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every queue of the topology and its arguments: the dead-letter queue, the work
    queue, then the retry queues (each declared after the queue it moves messages to)."""
    dead, media = dead_letter_queue_name(settings), settings.broker.media_queue
    work = queue_arguments(settings, dead)
    if settings.broker.queue_type == "quorum":
        work["x-delivery-limit"] = DELIVERY_LIMIT
    queues = {dead: queue_arguments(settings, None), media: work}
    for delay_ms in settings.retry.delays_ms:
        queues[retry_queue_name(settings, delay_ms)] = {
            "x-message-ttl": delay_ms,
            **queue_arguments(settings, media),
        }
    return queues


async def declare_queue(
    channel: AbstractChannel, settings: Settings, name: str, arguments: dict[str, Any]
) -> AbstractQueue:
    """Raises QueueMismatch (and the channel closes) if it exists with other arguments."""
    try:
        return await channel.declare_queue(name, durable=True, arguments=arguments)
    except aiormq.exceptions.ChannelPreconditionFailed as error:
        raise QueueMismatch(name, settings.broker.queue_type, str(error)) from None


async def declare_bucket_events(channel: AbstractChannel, settings: Settings) -> AbstractExchange:
    """The exchange the store publishes its events to (the store may declare it first)."""
    return await channel.declare_exchange(
        settings.broker.events_exchange,
        type=aio_pika.ExchangeType(settings.broker.events_exchange_type),
        durable=BUCKET_EVENTS_EXCHANGE_FLAGS.durable,
        auto_delete=BUCKET_EVENTS_EXCHANGE_FLAGS.auto_delete,
        internal=BUCKET_EVENTS_EXCHANGE_FLAGS.internal,
    )


async def declare(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    """Declare everything; returns the media queue to consume from."""
    bucket_events = await declare_bucket_events(channel, settings)
    queues = {
        name: await declare_queue(channel, settings, name, arguments)
        for name, arguments in declarations(settings).items()
    }
    media = queues[settings.broker.media_queue]
    await media.bind(bucket_events, routing_key=settings.broker.events_routing_key)
    return media


async def declare_before_start(settings: Settings) -> None:
    """Declare everything once, on a connection of its own, before a server starts its
    processes: a queue of another type stops start-up here, with QueueMismatch, rather
    than in each process it would have started."""
    broker = await connection.connect(settings.broker.nodes())
    async with broker:
        await declare(await broker.channel(), settings)
