"""Looking into RabbitMQ from the tests: queue counts and draining a queue."""

from __future__ import annotations

import subprocess
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
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name or settings.broker.media_queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        result = queue.declaration_result
        return QueueState(result.message_count or 0, result.consumer_count or 0)


async def consumers_at_least(settings: Settings, count: int) -> bool:
    state = await queue_state(settings)
    return state is not None and state.consumers >= count


async def drain(settings: Settings, name: str) -> list[AbstractIncomingMessage]:
    """Every message now on the queue, removed from it."""
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(name)
        found = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            found.append(message)
        return found


def connections_named(fragment: str) -> list[str]:
    """RabbitMQ's ids of the open connections whose client name contains `fragment`."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # One line per connection: its pid, a tab, then its client properties as Erlang terms.
    return [line.split("\t", 1)[0] for line in listed.stdout.splitlines() if fragment in line]


def close_connection(connection_id: str) -> None:
    """What a broker restart or a network cut does to one client: the server closes it."""
    subprocess.run(
        ["rabbitmqctl", "-q", "close_connection", connection_id, "closed by the test"],
        check=True,
        capture_output=True,
        timeout=60,
    )
