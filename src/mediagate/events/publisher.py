"""Publishing processing jobs: persistent messages, publisher confirms, mandatory routing."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from mediagate.config import Settings
from mediagate.events import topology
from mediagate.events.messages import ProcessJob


class JobPublisher:
    def __init__(self, connection: AbstractRobustConnection, settings: Settings) -> None:
        self._connection = connection
        self._settings = settings
        self._queue = settings.broker.media_queue
        self._channel: aio_pika.abc.AbstractChannel | None = None

    @classmethod
    async def connect(cls, settings: Settings) -> JobPublisher:
        connection = await aio_pika.connect_robust(settings.broker.url)
        publisher = cls(connection, settings)
        publisher._channel = await connection.channel(publisher_confirms=True)
        await topology.declare(publisher._channel, settings)
        return publisher

    async def publish(self, job: ProcessJob) -> None:
        """Returns once the broker has confirmed the message is stored."""
        assert self._channel is not None, "connect() first"
        message = aio_pika.Message(
            job.to_bytes(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(job.media_id),
        )
        await self._channel.default_exchange.publish(
            message, routing_key=self._queue, mandatory=True
        )

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting on the media queue and the dead-letter queue."""
        assert self._channel is not None, "connect() first"
        depths = {}
        for name in (self._queue, topology.dead_letter_queue_name(self._settings)):
            queue = await self._channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count or 0
        return depths

    @property
    def is_connected(self) -> bool:
        return not self._connection.is_closed

    async def close(self) -> None:
        await self._connection.close()
