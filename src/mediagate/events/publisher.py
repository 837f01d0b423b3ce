"""Publishing processing jobs: persistent messages, publisher confirms, mandatory routing.

A job counts as published only once a node has confirmed it. One that is not (its
node went away before confirming, it refused it, or the queue had no route) is sent
again, on the next node once the connection has moved there, until
`AMQP_PUBLISH_TIMEOUT`; a duplicate is harmless (each upload is processed once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from mediagate.config import Settings
from mediagate.events import connection, topology
from mediagate.events.messages import ProcessJob

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 0.5


class PublishFailed(Exception):
    pass


class JobPublisher:
    def __init__(
        self, broker: AbstractRobustConnection, channel: AbstractChannel, settings: Settings
    ) -> None:
        self._connection = broker
        self._channel = channel
        self._settings = settings
        self._queue = settings.broker.media_queue
        self._replacing = asyncio.Lock()

    @classmethod
    async def connect(cls, settings: Settings) -> JobPublisher:
        broker = await connection.connect(
            settings.broker.nodes(),
            reconnect_interval=RECONNECT_SECONDS,
        )
        channel = await broker.channel(publisher_confirms=True, on_return_raises=True)
        await topology.declare(channel, settings)
        return cls(broker, channel, settings)

    async def publish(self, job: ProcessJob) -> None:
        """Returns once a node has confirmed the message is stored; raises PublishFailed
        if none has by the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.broker.publish_timeout
        while True:
            remaining = deadline - loop.time()
            channel = self._channel
            try:
                await asyncio.wait_for(
                    self._publish_once(channel, job), timeout=max(remaining, 0.001)
                )
                return
            except TimeoutError as error:
                raise PublishFailed("no node confirmed the job in time") from error
            except Exception as error:  # not confirmed: try again, on the next node
                if loop.time() >= deadline:
                    raise PublishFailed(f"the job was not confirmed: {error!r}") from error
                log.warning("a job's publish was not confirmed; sending it again: %r", error)
                await self._until_connected(deadline - loop.time())
                if isinstance(error, aio_pika.exceptions.DeliveryError):
                    await self._replace_channel(channel)

    async def _replace_channel(self, failed: AbstractChannel) -> None:
        """A channel whose quorum queue lost its leader can go on refusing every message
        after another node took over (RabbitMQ 3.10, measured: for minutes); a new channel
        finds the new leader at once. Concurrent publishes replace it once."""
        async with self._replacing:
            if self._channel is not failed:
                return
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
        with contextlib.suppress(Exception):
            await failed.close()

    async def _publish_once(self, channel: AbstractChannel, job: ProcessJob) -> None:
        message = aio_pika.Message(
            job.to_bytes(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(job.media_id),
        )
        await channel.default_exchange.publish(message, routing_key=self._queue, mandatory=True)

    async def _until_connected(self, seconds: float) -> None:
        """A moment's pause (a node that refused the job may take it again soon), then
        until the connection is up again, on whichever node answered."""
        await asyncio.sleep(min(RECONNECT_SECONDS, max(seconds, 0)))
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(self._connection.connected.wait(), max(seconds, 0.001))

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting on the media queue and the dead-letter queue."""
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
