"""Thin message handling: parse, run the pipeline, then ack, retry later or dead-letter.

A message is acked only once its outcome is settled: done, or a copy confirmed on a
retry or dead-letter queue. Anything unexpected here is a broker problem, so the
message goes back to the queue rather than being dropped.
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from mediagate.config import Settings
from mediagate.events.messages import MalformedMessage, parse_message
from mediagate.events.topology import dead_letter_queue_name, retry_queue_name
from mediagate.services.pipeline import DeadLetter, Done, MediaPipeline, Outcome, Retry

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-mediagate-attempt"
REASON_HEADER = "x-mediagate-reason"


def attempt_of(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def worst(outcomes: list[Outcome]) -> Outcome:
    for kind in (DeadLetter, Retry):
        for outcome in outcomes:
            if isinstance(outcome, kind):
                return outcome
    return outcomes[0] if outcomes else Done("nothing to do")


class MediaConsumer:
    def __init__(
        self, settings: Settings, pipeline: MediaPipeline, channel: AbstractChannel
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._channel = channel
        self._in_flight: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        self._idle.clear()
        try:
            await self._settle(message)
        except Exception:
            log.exception("could not settle a message; it goes back to the queue")
            await message.nack(requeue=True)
        finally:
            self._in_flight.discard(task)
            if not self._in_flight:
                self._idle.set()

    async def _settle(self, message: AbstractIncomingMessage) -> None:
        attempt = attempt_of(message)
        try:
            parsed = parse_message(message.body, self._settings.s3_bucket)
        except MalformedMessage as error:
            await self._republish(
                message, dead_letter_queue_name(self._settings), attempt, str(error)
            )
            await message.ack()
            return
        for reason in parsed.ignored:
            log.info("bucket event passed over", extra={"reason": reason})
        for item in parsed.items:
            log.info(
                "processing", extra={"key": item.file_key, "via": item.source, "attempt": attempt}
            )
        outcome = worst(
            [
                await self._pipeline.handle(item.file_key, attempt, bool(message.redelivered))
                for item in parsed.items
            ]
        )
        if isinstance(outcome, Retry):
            delays = self._settings.retry_delays_ms
            queue = retry_queue_name(self._settings, delays[min(attempt, len(delays) - 1)])
            await self._republish(message, queue, attempt + 1, outcome.reason)
        elif isinstance(outcome, DeadLetter):
            await self._republish(
                message, dead_letter_queue_name(self._settings), attempt, outcome.reason
            )
        await message.ack()

    async def _republish(
        self, message: AbstractIncomingMessage, queue: str, attempt: int, reason: str
    ) -> None:
        """Publish a copy and wait for the broker's confirm; only then may the original go."""
        headers = {**(message.headers or {}), ATTEMPT_HEADER: attempt, REASON_HEADER: reason[:500]}
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
        )
        await self._channel.default_exchange.publish(copy, routing_key=queue, mandatory=True)
        log.info("message moved", extra={"queue": queue, "attempt": attempt, "reason": reason})

    async def shutdown(self, queue: AbstractQueue, consumer_tag: str, grace: float) -> None:
        """Stop taking messages, let jobs in flight finish within `grace`, cancel the rest.

        A cancelled job's message is not acked, so the broker redelivers it.
        """
        await queue.cancel(consumer_tag)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        except TimeoutError:
            log.warning("jobs still running after the grace period; they go back to the queue")
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
