"""Delivering the outbox: every worker process takes due deliveries (leased, so each is
sent by one process at a time) and POSTs them, apart from its media jobs, so a slow
receiver holds no media slot. Polled: a NOTIFY per event would serialize the commits
of every final status change."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from mediagate.config import Settings
from mediagate.db import webhook_rows
from mediagate.db.webhook_rows import AttemptResult, Delivery
from mediagate.domain.clock import utcnow
from mediagate.domain.webhooks import Verdict, parse_retry_after, retry_delay, verdict_of
from mediagate.outbound.http import AddressRefused, Answer, NoAnswer, OutboundClient
from mediagate.outbound.signing import signed_headers
from mediagate.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
# A lease outlives the longest attempt (WEBHOOK_TIMEOUT) by this much before another
# process may take the delivery: only a process that died mid-send is overtaken.
LEASE_MARGIN_SECONDS = 5.0

_STATES = {
    Verdict.DELIVERED: "delivered",
    Verdict.RETRY: "pending",
    Verdict.FAILED: "failed",
    Verdict.GONE: "failed",
}


class WebhookDispatcher:
    def __init__(
        self,
        settings: Settings,
        client: OutboundClient,
        metrics: WorkerMetrics,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._hooks = settings.webhooks
        self._lease = settings.outbound.timeout + LEASE_MARGIN_SECONDS
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self._sending: dict[uuid.UUID, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()

    async def run(self) -> None:
        """Until cancelled; in-flight deliveries finish (or their leases lapse)."""
        try:
            while True:
                try:
                    took = await self._take_due()
                except Exception:  # the database may be down: the next poll tries again
                    log.exception("taking due webhook deliveries failed")
                    took = False
                if not took:
                    # Until the next poll, or a slot frees (its endpoint may have more due).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_freed.wait(), POLL_SECONDS)
                self._slot_freed.clear()
        finally:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _take_due(self) -> bool:
        """Whether it took any: then more may be due at once."""
        free = self._hooks.concurrency - len(self._tasks)
        if free <= 0:
            return False
        claimed = await webhook_rows.claim_due(
            dict(self._sending), self._hooks.endpoint_concurrency, free, self._lease
        )
        for delivery in claimed:
            self._sending[delivery.endpoint_id] = self._sending.get(delivery.endpoint_id, 0) + 1
            task = asyncio.create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._finished, delivery))
        return bool(claimed)

    def _finished(self, delivery: Delivery, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()
        left = self._sending.pop(delivery.endpoint_id) - 1
        if left:
            self._sending[delivery.endpoint_id] = left

    async def _deliver(self, delivery: Delivery) -> None:
        result = await self._attempt(delivery)
        try:
            await webhook_rows.record_attempt(delivery, result)
        except Exception:  # its lease lapses and the event is sent again: never lost
            log.exception("recording a webhook attempt failed", extra={"id": delivery.id})
            return
        self._metrics.webhook_deliveries.labels(_result_label(result)).inc()

    async def _attempt(self, delivery: Delivery) -> AttemptResult:
        now = self._clock()
        headers = signed_headers(str(delivery.event_id), delivery.body, delivery.secrets, now)
        started = time.perf_counter()
        try:
            answer = await self._client.post(delivery.url, delivery.body.encode(), headers)
        except (AddressRefused, NoAnswer) as error:
            return self._judged(delivery, None, str(error), started, None)
        return self._judged(delivery, answer.status, None, started, answer)

    def _judged(
        self,
        delivery: Delivery,
        status: int | None,
        error: str | None,
        started: float,
        answer: Answer | None,
    ) -> AttemptResult:
        verdict = verdict_of(status, delivery.attempt, self._hooks.retry_schedule)
        retry_at = None
        if verdict is Verdict.RETRY:
            now = self._clock()
            after = None
            if answer is not None:
                after = parse_retry_after(answer.status, answer.headers.get("retry-after"), now)
            delay = retry_delay(delivery.attempt, self._hooks.retry_schedule, after)
            retry_at = now + timedelta(seconds=delay)
        return AttemptResult(
            http_status=status,
            error=error,
            duration_ms=round((time.perf_counter() - started) * 1000),
            state=_STATES[verdict],
            retry_at=retry_at,
            disable_endpoint=verdict is Verdict.GONE,
        )


def _result_label(result: AttemptResult) -> str:
    if result.disable_endpoint:
        return "disabled"
    return "retried" if result.state == "pending" else result.state
