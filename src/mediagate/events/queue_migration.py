"""`mediagate queues migrate`: queues of another type (classic ones, declared before
QUEUE_TYPE=quorum) replaced by queues of the configured type, their messages moved
along, none lost.

RabbitMQ cannot change a queue's type, so each queue is emptied into a holding queue
of the new type, deleted, declared anew, and refilled. The work queue's holding queue
is bound to the bucket-events exchange while it exists, so the store's events keep
landing somewhere. Each message is acked on its old queue only once the new one has
confirmed its copy: a crash moves some twice (harmless: each upload is processed once)
and none never; running the command again finishes the job.

Stop the API and the workers first: the API's jobs go to the work queue by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from mediagate.config import Settings
from mediagate.events import topology

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Moved:
    queue: str
    messages: int


def holding_queue_name(queue: str) -> str:
    return f"{queue}.migrating"


async def migrate(settings: Settings) -> list[Moved]:
    """Replace every queue whose type is not QUEUE_TYPE; returns what each one held."""
    connection = await aio_pika.connect(settings.broker.nodes()[0])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        media, dead = settings.broker.media_queue, topology.dead_letter_queue_name(settings)
        await _hold_events(channel, settings)
        queues = topology.declarations(settings)
        # Retry queues first: what expires from them goes to the work queue by name.
        moved = []
        for name in sorted(queues, key=lambda queue: queue in (media, dead)):
            if await _mismatched(connection, settings, name, queues[name]):
                await _unbind_events(channel, settings, name)
                holding = holding_queue_name(dead if name == dead else media)
                count = await _move(channel, name, holding)
                await channel.queue_delete(name)
                moved.append(Moved(name, count))
                log.info("queue emptied and deleted", extra={"queue": name, "moved": count})
        # A channel that published to a queue of the old type must not publish to the
        # new one of the same name: RabbitMQ 3.10 closes the connection (measured).
        await channel.close()
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel, settings)
        for name in (media, dead):
            await _unbind_events(channel, settings, holding_queue_name(name))
            await _move(channel, holding_queue_name(name), name)
            await channel.queue_delete(holding_queue_name(name))
        return moved


async def _unbind_events(channel: AbstractChannel, settings: Settings, name: str) -> None:
    """No event lands on the queue any more (it may have had no binding): what it holds
    now is all it will ever hold, so emptying it and deleting it loses nothing."""
    queue = await channel.get_queue(name, ensure=False)
    await queue.unbind(settings.broker.events_exchange, settings.broker.events_routing_key)


async def _hold_events(channel: AbstractChannel, settings: Settings) -> None:
    arguments = topology.queue_arguments(settings, None)
    for name in (settings.broker.media_queue, topology.dead_letter_queue_name(settings)):
        await channel.declare_queue(holding_queue_name(name), durable=True, arguments=arguments)
    exchange = await topology.declare_bucket_events(channel, settings)
    holding = await channel.get_queue(holding_queue_name(settings.broker.media_queue))
    await holding.bind(exchange, routing_key=settings.broker.events_routing_key)


async def _mismatched(
    connection: AbstractConnection, settings: Settings, name: str, arguments: dict[str, Any]
) -> bool:
    """Whether the queue exists with other arguments than this configuration's (a
    refused declaration closes its channel: a channel of its own for each check)."""
    probe = await connection.channel()
    try:
        await probe.declare_queue(name, passive=True)
        await topology.declare_queue(probe, settings, name, arguments)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    except topology.QueueMismatch:
        return True
    await probe.close()
    return False


async def _move(channel: AbstractChannel, source: str, target: str) -> int:
    queue = await channel.get_queue(source)
    moved = 0
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        await channel.default_exchange.publish(_copy(message), routing_key=target, mandatory=True)
        await message.ack()
        moved += 1
    return moved


def _copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers=message.headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
    )
