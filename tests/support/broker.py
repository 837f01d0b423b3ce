"""Looking into RabbitMQ from the tests: queue counts and draining a queue."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from mediagate.config import Settings


@dataclass(frozen=True)
class QueueState:
    messages: int
    consumers: int


async def queue_state(settings: Settings, name: str | None = None) -> QueueState | None:
    """Ready messages and consumers of a queue (the media queue by default); None if absent."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name or settings.media_queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        result = queue.declaration_result
        return QueueState(result.message_count or 0, result.consumer_count or 0)


async def consumers_at_least(settings: Settings, count: int) -> bool:
    state = await queue_state(settings)
    return state is not None and state.consumers >= count


async def drain(settings: Settings, name: str) -> list[AbstractIncomingMessage]:
    """Every message now on the queue, removed from it."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(name)
        found = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            found.append(message)
        return found
