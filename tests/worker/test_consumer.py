"""The consumer on a real RabbitMQ channel, in-process: what it logs for what it skips."""

from __future__ import annotations

import json
import logging
import uuid

import aio_pika
import pytest

from mediagate.config import Settings
from mediagate.worker.consumer import LOGGED_REASONS, MediaConsumer
from mediagate.worker.metrics import WorkerMetrics
from mediagate.worker.pipeline import MediaPipeline


async def test_records_passed_over_cost_one_log_line_per_message(
    settings: Settings, pipeline: MediaPipeline, caplog: pytest.LogCaptureFixture
) -> None:
    records = [
        {
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": f"other-{i}"}, "object": {"key": f"sessions/{i}.jpg"}},
        }
        for i in range(10_000)
    ]
    connection = await aio_pika.connect(settings.broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"test.consumer.{uuid.uuid4().hex}", exclusive=True)
        body = json.dumps({"Records": records}).encode()
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue.name)
        message = await queue.get(timeout=30)
        consumer = MediaConsumer(settings, pipeline, channel, WorkerMetrics())
        with caplog.at_level(logging.INFO, logger="mediagate.worker.consumer"):
            await consumer.on_message(message)
    (line,) = [r for r in caplog.records if r.getMessage() == "bucket event records passed over"]
    assert vars(line)["count"] == 10_000
    assert len(vars(line)["reasons"]) == LOGGED_REASONS
