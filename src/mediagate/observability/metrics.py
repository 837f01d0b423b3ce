"""Prometheus metrics, computed from the database and the broker at scrape time.

Derived state rather than in-process counters: the numbers are the same whichever API
process (or replica) answers the scrape, and survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RefusalCounts:
    """Uploads this process refused at a bound, by the bound's name (its setting)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = dict.fromkeys(REFUSAL_LIMITS, 0)

    def count(self, limit: str) -> None:
        self._counts[limit] = self._counts.get(limit, 0) + 1

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)


REFUSAL_LIMITS = (
    "UPLOAD_REQUIRE_SIZE",
    "MAX_IMAGE_BYTES",
    "MAX_VIDEO_BYTES",
    "MAX_SESSION_ITEMS",
    "MAX_PENDING_UPLOADS_PER_USER",
    "ORG_STORAGE_QUOTA_BYTES",
)
# One per process: the refusals happen in services, the scrape reads them here.
REFUSALS = RefusalCounts()


@dataclass(frozen=True, slots=True)
class Snapshot:
    media_by_status: dict[str, int]
    viruses_found: int
    processing_seconds: dict[float, float]
    queue_messages: dict[str, int]
    # In flight past the reconciler's bound.
    stuck: int
    # Of the API process that answers the scrape (not derived state).
    subscriptions: int
    slow_subscribers_dropped: int
    # Seconds the oldest undelivered webhook event has waited (0: none waits).
    webhook_backlog_seconds: float = 0.0
    webhook_endpoints_disabled: int = 0
    # Of the API process that answers the scrape, since it started.
    refusals: dict[str, int] = field(default_factory=dict)


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        media = GaugeMetricFamily(
            "mediagate_media",
            "Uploads by status (rates: use increase over time)",
            labels=["status"],
        )
        for status, count in self._snapshot.media_by_status.items():
            media.add_metric([status], count)
        viruses = GaugeMetricFamily(
            "mediagate_viruses_found", "Uploads rejected because the scanner found a virus"
        )
        viruses.add_metric([], self._snapshot.viruses_found)
        latency = GaugeMetricFamily(
            "mediagate_processing_seconds",
            "Upload-to-COMPLETED time over the last hour",
            labels=["quantile"],
        )
        for quantile, seconds in self._snapshot.processing_seconds.items():
            latency.add_metric([str(quantile)], seconds)
        queues = GaugeMetricFamily(
            "mediagate_queue_messages", "Messages waiting in RabbitMQ", labels=["queue"]
        )
        for queue, count in self._snapshot.queue_messages.items():
            queues.add_metric([queue], count)
        stuck = GaugeMetricFamily(
            "mediagate_media_stuck",
            "Uploads still UPLOADED, SCANNING or PROCESSING past the URL lifetime plus "
            "RECONCILE_STUCK_AFTER",
        )
        stuck.add_metric([], self._snapshot.stuck)
        subscriptions = GaugeMetricFamily(
            "mediagate_subscriptions",
            "Open mediaUpdated subscriptions on the API process that answered",
        )
        subscriptions.add_metric([], self._snapshot.subscriptions)
        dropped = CounterMetricFamily(
            "mediagate_slow_subscribers_dropped",
            "Subscribers dropped for not reading, by the API process that answered",
        )
        dropped.add_metric([], self._snapshot.slow_subscribers_dropped)
        backlog = GaugeMetricFamily(
            "mediagate_webhook_oldest_undelivered_seconds",
            "Age of the oldest webhook delivery still pending (0 when none is)",
        )
        backlog.add_metric([], self._snapshot.webhook_backlog_seconds)
        disabled = GaugeMetricFamily(
            "mediagate_webhook_endpoints_disabled",
            "Webhook endpoints disabled because they answered 410 Gone",
        )
        disabled.add_metric([], self._snapshot.webhook_endpoints_disabled)
        refused = CounterMetricFamily(
            "mediagate_upload_refusals",
            "Upload requests refused at a bound (its setting), by the API process that answered",
            labels=["limit"],
        )
        for limit, count in self._snapshot.refusals.items():
            refused.add_metric([limit], count)
        return [
            media, viruses, latency, queues, stuck, subscriptions, dropped, backlog, disabled,
            refused,
        ]  # fmt: skip


def render(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
