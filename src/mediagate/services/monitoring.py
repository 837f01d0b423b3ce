"""What operators watch: the numbers behind /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from mediagate.db import media_repository as repo
from mediagate.observability.metrics import Snapshot

LATENCY_WINDOW = timedelta(hours=1)


class Broker(Protocol):
    async def queue_depths(self) -> dict[str, int]: ...

    @property
    def is_connected(self) -> bool: ...


async def readiness(broker: Broker) -> dict[str, str]:
    """What /readyz reports: can this process reach the database and the broker?"""
    return {
        "database": "ok" if await repo.ping() else "down",
        "broker": "ok" if broker.is_connected else "down",
    }


class Feed(Protocol):
    @property
    def subscriber_count(self) -> int: ...

    @property
    def dropped_count(self) -> int: ...


async def snapshot(broker: Broker, feed: Feed, stuck_after: timedelta) -> Snapshot:
    """`stuck_after`: how long after its URL was issued an upload must have left the
    in-flight statuses (the URL's lifetime plus the reconciler's bound)."""
    counts = await repo.status_counts()
    return Snapshot(
        media_by_status={status.value: count for status, count in counts.items()},
        viruses_found=await repo.viruses_found(),
        processing_seconds=await repo.processing_seconds(LATENCY_WINDOW),
        queue_messages=await broker.queue_depths(),
        stuck=await repo.count_stuck_since_created(datetime.now(UTC) - stuck_after),
        subscriptions=feed.subscriber_count,
        slow_subscribers_dropped=feed.dropped_count,
    )
