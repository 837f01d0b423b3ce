"""`mediagate worker` as a real process, and MinIO's side of the bucket events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import quote_plus

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from mediagate.config import Settings
from mediagate.db import media_rows as repo
from mediagate.db.media_rows import MediaRecord
from mediagate.domain.status import MediaStatus
from mediagate.events.topology import dead_letter_queue_name
from tests.support.broker import consumers_at_least, drain


class WorkerProcess:
    def __init__(self, env: dict[str, str], *arguments: str) -> None:
        self._env = {"PATH": os.environ["PATH"], **env}
        self._arguments = arguments
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mediagate.cli", "worker", *self._arguments], env=self._env
        )

    async def start(self, settings: Settings) -> None:
        self._spawn()
        await wait_until(
            lambda: consumers_at_least(settings, 1), "the worker never started consuming"
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def wait_until(condition: object, message: str, timeout: float = 90.0) -> None:
    """Poll an async condition until it holds; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)


async def wait_for_status(key: str, *statuses: MediaStatus, timeout: float = 120.0) -> MediaRecord:
    async def reached() -> bool:
        record = await repo.find_by_key(key)
        return record is not None and record.status in statuses

    await wait_until(reached, f"{key} never reached {statuses}", timeout)
    record = await repo.find_by_key(key)
    assert record is not None
    return record


def minio_event(bucket: str, key: str, size: int, event: str = "s3:ObjectCreated:Put") -> bytes:
    """The body MinIO's AMQP target publishes (event.Log): EventName, Key, Records."""
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "eventName": event,
        "userIdentity": {"principalId": "mediagate"},
        "requestParameters": {"principalId": "", "region": "", "sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-id-2": uuid.uuid4().hex,
            "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
            "x-minio-deployment-id": str(uuid.uuid4()),
            "x-minio-origin-endpoint": "http://127.0.0.1:9000",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "mediagate-uploads",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "mediagate"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": quote_plus(key, safe=""),
                "size": size,
                "eTag": uuid.uuid4().hex,
                "contentType": "image/jpeg",
                "userMetadata": {"content-type": "image/jpeg"},
                "sequencer": uuid.uuid4().hex[:16].upper(),
            },
        },
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64)"},
    }
    return json.dumps({"EventName": event, "Key": f"{bucket}/{key}", "Records": [record]}).encode()


async def publish_as_minio(settings: Settings, body: bytes) -> None:
    """Publish as MinIO does: re-declare the exchange (same flags), persistent JSON."""
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            settings.broker.events_exchange,
            type=settings.broker.events_exchange_type,
            durable=True,
            auto_delete=False,
            internal=False,
        )
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=settings.broker.events_routing_key,
        )


async def dead_letters(settings: Settings) -> list[AbstractIncomingMessage]:
    return await drain(settings, dead_letter_queue_name(settings))
