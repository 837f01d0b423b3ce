"""Thin message handling: parse, run the pipeline, then ack, retry later or dead-letter.

A message is acked only once its outcome is settled: done, or a copy confirmed on a
retry or dead-letter queue. Anything unexpected here is a broker problem, so the
message goes back to the queue rather than being dropped.

A job outlives its message: when the broker connection drops, the message's handler
is cancelled but the job goes on, and the redelivered message joins it (or takes its
outcome, if it finished meanwhile) instead of starting a second run. A dropped
connection is not a dead worker, so it never counts as a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from mediagate.config import Settings
from mediagate.events.messages import MalformedMessage, ParsedMessage, parse_message
from mediagate.events.topology import dead_letter_queue_name, retry_queue_name
from mediagate.worker.metrics import WorkerMetrics
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.retries import DeadLetter, Done, Outcome, Retry, next_try

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-mediagate-attempt"
REASON_HEADER = "x-mediagate-reason"
# A finished job whose message could not be settled waits this long for the redelivery.
UNSETTLED_JOB_SECONDS = 600.0
STOPPED = "the worker stopped during the job"
LOGGED_REASONS = 5
LOGGED_REASON_CHARS = 200


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
        self,
        settings: Settings,
        pipeline: MediaPipeline,
        channel: AbstractChannel,
        metrics: WorkerMetrics,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._channel = channel
        self._metrics = metrics
        self._in_flight: set[asyncio.Task[None]] = set()
        self._jobs: dict[str, asyncio.Task[Outcome]] = {}

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        self._metrics.in_flight.inc()
        try:
            await self._settle(message)
        except Exception:
            log.exception("could not settle a message; it goes back to the queue")
            await message.nack(requeue=True)
        finally:
            self._in_flight.discard(task)
            self._metrics.in_flight.dec()

    async def _outcome(self, file_key: str, attempt: int, redelivered: bool) -> Outcome:
        job = self._jobs.get(file_key)
        if job is not None and redelivered:
            log.info("a redelivered message joins its job", extra={"key": file_key})
        elif job is None or job.done():
            job = asyncio.create_task(self._pipeline.handle(file_key, attempt, redelivered))
            self._jobs[file_key] = job
            job.add_done_callback(lambda _: self._forget_later(file_key, job))
        else:
            # A second message for an upload in progress (event and confirm): the
            # pipeline's lock answers it, as it does across worker processes.
            return await self._pipeline.handle(file_key, attempt, redelivered)
        return await asyncio.shield(job)

    def _forget(self, file_key: str, job: asyncio.Task[Outcome]) -> None:
        if self._jobs.get(file_key) is job:
            del self._jobs[file_key]

    def _forget_later(self, file_key: str, job: asyncio.Task[Outcome]) -> None:
        asyncio.get_running_loop().call_later(UNSETTLED_JOB_SECONDS, self._forget, file_key, job)

    async def _settle(self, message: AbstractIncomingMessage) -> None:
        attempt = attempt_of(message)
        try:
            parsed = parse_message(message.body, self._settings.s3.bucket)
        except MalformedMessage as error:
            await self._republish(
                message, dead_letter_queue_name(self._settings), attempt, str(error)
            )
            self._metrics.dead_letters.inc()
            await message.ack()
            return
        _log_received(parsed, attempt)
        work = asyncio.ensure_future(
            self._outcomes([item.file_key for item in parsed.items], attempt, message)
        )
        leased = not (await asyncio.wait({work}, timeout=self._settings.worker.job_ack_after))[0]
        if leased:
            # RabbitMQ takes a delivery back from a consumer that holds it past its
            # consumer timeout (30 min by default) and hands it to another worker. A long
            # job lets go of its message instead and keeps its lease: the upload's
            # advisory lock, which the reconciler respects; should this worker die, the
            # lock goes with it and the reconciler queues the job again.
            await message.ack()
            log.info("long job: message acked, the job holds its lease")
        try:
            outcome = await work
        except asyncio.CancelledError:
            # The worker stops (or its connection dropped, and the job goes on): the
            # message of a leased job is gone, so queue the job again now rather than
            # after the reconciler's bound. A second message finds the lock if the job
            # still runs.
            if leased:
                with contextlib.suppress(Exception):
                    await self._republish(
                        message, self._settings.broker.media_queue, attempt, STOPPED
                    )
            raise
        await self._follow_up(message, outcome, attempt)
        if not leased:
            await message.ack()
        for item in parsed.items:
            if (job := self._jobs.get(item.file_key)) is not None and job.done():
                self._forget(item.file_key, job)

    async def _follow_up(
        self, message: AbstractIncomingMessage, outcome: Outcome, attempt: int
    ) -> None:
        """A retry goes to the delay queue its attempt earns, a dead letter to the dead
        queue; a finished job is counted."""
        if isinstance(outcome, Retry):
            then = next_try(outcome, attempt, self._settings.retry)
            queue = retry_queue_name(self._settings, then.delay_ms)
            await self._republish(message, queue, then.attempt, outcome.reason)
            self._metrics.retries.inc()
        elif isinstance(outcome, DeadLetter):
            await self._republish(
                message, dead_letter_queue_name(self._settings), attempt, outcome.reason
            )
            self._metrics.dead_letters.inc()
        else:
            self._metrics.finished(outcome.result, outcome.timings)

    async def _outcomes(
        self, file_keys: list[str], attempt: int, message: AbstractIncomingMessage
    ) -> Outcome:
        return worst(
            [await self._outcome(key, attempt, bool(message.redelivered)) for key in file_keys]
        )

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
        running = {*self._in_flight, *(job for job in self._jobs.values() if not job.done())}
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace)
        if late:
            log.warning("jobs still running after the grace period; they go back to the queue")
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)


def _log_received(parsed: ParsedMessage, attempt: int) -> None:
    if parsed.ignored:
        # One line a message, whatever the number of records it carries.
        reasons = sorted({reason[:LOGGED_REASON_CHARS] for reason in parsed.ignored})
        log.info(
            "bucket event records passed over",
            extra={"count": len(parsed.ignored), "reasons": reasons[:LOGGED_REASONS]},
        )
    for item in parsed.items:
        log.info("processing", extra={"key": item.file_key, "via": item.source, "attempt": attempt})
