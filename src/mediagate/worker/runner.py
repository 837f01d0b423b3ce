"""`mediagate worker`: wire the pipeline to RabbitMQ and run until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from aio_pika.abc import AbstractRobustConnection

from mediagate.config import Settings
from mediagate.db import engine as db_engine
from mediagate.db import locks
from mediagate.events import connection as broker_connection
from mediagate.events import topology
from mediagate.events.publisher import JobPublisher
from mediagate.outbound.http import OutboundClient
from mediagate.processing.images import reuse_image_memory
from mediagate.processing.isolation import DecoderPool
from mediagate.scanning.clamav import ClamdScanner
from mediagate.services.audit import purge_expired
from mediagate.services.webhooks import configure_endpoint_for_all, purge_delivered
from mediagate.storage.object_store import ObjectStore
from mediagate.worker import reconciler
from mediagate.worker.consumer import MediaConsumer
from mediagate.worker.metrics import WorkerMetrics
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.reconciler import Bounds, Reconciler
from mediagate.worker.scratch import remove_abandoned_scratch
from mediagate.worker.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)


HEARTBEAT_SECONDS = 10.0
SCANNER_PING_SECONDS = 15.0
HOUSEKEEPING_SECONDS = 3600.0
# A dropped broker connection costs jobs nothing (they go on), so come back soon.
RECONNECT_SECONDS = 1.0
STALE_MARGIN_SECONDS = 600.0


async def _beat(path: Path, connection: AbstractRobustConnection) -> None:
    """Touch `path` while the broker connection is up: a container healthcheck reads it."""
    while True:
        if not connection.is_closed:
            await asyncio.to_thread(path.touch)
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def _watch_resources(scanner: ClamdScanner, metrics: WorkerMetrics) -> None:
    """Whether clamd answers and how much scratch space is left, for the alerts, even
    while no job runs."""
    while True:
        metrics.scanner_up.set(1 if await asyncio.to_thread(scanner.ping) else 0)
        metrics.scratch_free_bytes.set(shutil.disk_usage(tempfile.gettempdir()).free)
        await asyncio.sleep(SCANNER_PING_SECONDS)


async def _keep_house(settings: Settings) -> None:
    """Audit events and webhook events past their retention go, hourly (every worker:
    the DELETEs are idempotent, and cheap on their indexes)."""
    while True:
        try:
            if purged := await purge_expired(settings.reconciler.audit_retention_days):
                log.info("audit events past retention deleted", extra={"count": purged})
            if purged := await purge_delivered(settings.webhooks.retention_days):
                log.info("webhook events past retention deleted", extra={"count": purged})
        except Exception:  # the next hour tries again; the worker's jobs go on
            log.exception("purging old events failed")
        await asyncio.sleep(HOUSEKEEPING_SECONDS)


async def _reconcile_periodically(
    settings: Settings, store: ObjectStore, metrics: WorkerMetrics
) -> None:
    """Every RECONCILE_INTERVAL, in whichever worker takes the lock first (one at a time)."""
    bounds = Bounds.of(settings.reconciler)
    publisher = await JobPublisher.connect(settings)
    try:
        while True:
            try:
                async with locks.advisory_lock(reconciler.LOCK_NAME) as mine:
                    if mine:
                        findings = await Reconciler(store, publisher, bounds).run()
                        metrics.reconciled(findings.counts())
            except Exception:  # the next run tries again; jobs go on meanwhile
                log.exception("reconciling failed")
            await asyncio.sleep(settings.reconciler.interval)
    finally:
        await publisher.close()


_M_MMAP_THRESHOLD = -3
# Buffers of this size and more (download chunks, upload parts) are mapped and unmapped
# on their own, never carved from the heap.
MMAP_THRESHOLD_BYTES = 128 * 1024


def keep_large_buffers_off_the_heap() -> None:
    """glibc raises its mmap threshold after each large buffer is freed, so the worker's
    1-5 MiB transfer buffers end up on the heap, which fragments and grows with the size
    of the file (a 1 GiB video: +6-13% peak RSS over a 100 MiB one). A fixed threshold
    keeps them mapped: the same peak for both. Elsewhere than glibc, nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


async def run_worker(settings: Settings, heartbeat: Path | None = None) -> int:
    keep_large_buffers_off_the_heap()
    engine = db_engine.bind_engine(settings)
    # One connection per job holds its advisory lock; the job's queries need others.
    await db_engine.start_pool(engine, settings.worker.prefetch * 2 + 2)
    decoders = DecoderPool(settings.worker.prefetch, initializer=reuse_image_memory)
    connection = await broker_connection.connect(
        settings.broker.nodes(),
        reconnect_interval=RECONNECT_SECONDS,
        client_properties={
            "connection_name": f"mediagate-worker {socket.gethostname()} {os.getpid()}"
        },
    )
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=settings.worker.prefetch)
        media_queue = await topology.declare(channel, settings)
        scanner = ClamdScanner(
            settings.scanner.host, settings.scanner.port, settings.scanner.timeout
        )
        if not await asyncio.to_thread(scanner.ping):
            log.warning("clamd does not answer; scans fail closed until it does")
        metrics = WorkerMetrics()
        if settings.worker.metrics_port is not None:
            metrics.serve(settings.worker.metrics_host, settings.worker.metrics_port)
        pinging = asyncio.create_task(_watch_resources(scanner, metrics))
        housekeeping = asyncio.create_task(_keep_house(settings))
        await decoders.start()
        store = ObjectStore(settings)
        await configure_endpoint_for_all(settings)
        outbound = OutboundClient(settings.outbound)
        delivering = asyncio.create_task(
            WebhookDispatcher(settings, outbound, metrics).run(), name="webhook-deliveries"
        )
        pipeline = MediaPipeline(settings, store, scanner, decoders, outbound)
        reconciling = asyncio.create_task(_reconcile_periodically(settings, store, metrics))
        longest_job = (
            settings.video.time_limit_max + settings.scanner.timeout + STALE_MARGIN_SECONDS
        )
        if removed := remove_abandoned_scratch(None, longest_job):
            log.warning("removed scratch directories of killed jobs", extra={"count": removed})
        consumer = MediaConsumer(settings, pipeline, channel, metrics)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        consumer_tag = await media_queue.consume(consumer.on_message)
        log.info("worker ready", extra={"queue": settings.broker.media_queue})
        beating = asyncio.create_task(_beat(heartbeat, connection)) if heartbeat else None
        await stop.wait()
        log.info("worker stopping")
        if beating is not None:
            beating.cancel()
        chores = (pinging, housekeeping, reconciling, delivering)
        for chore in chores:
            chore.cancel()
        await asyncio.gather(*chores, return_exceptions=True)
        await consumer.shutdown(media_queue, consumer_tag, settings.worker.shutdown_grace)
        await outbound.close()
    finally:
        await connection.close()
        decoders.close()
        await engine.close_connection_pool()
    log.info("worker stopped")
    return 0
