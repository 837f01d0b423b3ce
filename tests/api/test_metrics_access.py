"""/metrics costs the database one snapshot per METRICS_CACHE_SECONDS however many scrape,
and answers only the holder of METRICS_TOKEN when one is set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from mediagate.config import Settings
from mediagate.events.publisher import JobPublisher
from mediagate.observability.metrics import Snapshot
from mediagate.services import monitoring
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons
from tests.support.api import Tenant
from tests.support.flow import request_upload

TOKEN = "scrape-token-of-the-test"
MAX_AGE = 5.0


@dataclass
class _Feed:
    subscriber_count: int = 0
    dropped_count: int = 0


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_scrapes_share_one_snapshot_per_window(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    publisher = await JobPublisher.connect(settings)
    feed, clock, taken = _Feed(), _Clock(), []

    async def take() -> Snapshot:
        taken.append(clock.now)
        return await monitoring.snapshot(publisher, feed, timedelta(hours=1))

    cache = monitoring.CachedSnapshots(take, feed, MAX_AGE, clock)
    try:
        first = await asyncio.gather(*(cache.get() for _ in range(50)))
        assert len(taken) == 1 and all(scraped == first[0] for scraped in first)
        pending = first[0].media_by_status["PENDING_UPLOAD"]

        await request_upload(api, tenant)
        feed.subscriber_count = 7
        clock.now += MAX_AGE - 0.1
        cached = await cache.get()
        assert len(taken) == 1 and cached.media_by_status["PENDING_UPLOAD"] == pending
        assert cached.subscriptions == 7, "the process's own figures are always current"

        clock.now += 0.2
        fresh = await cache.get()
        assert len(taken) == 2 and fresh.media_by_status["PENDING_UPLOAD"] == pending + 1
    finally:
        await publisher.close()


@pytest.fixture(scope="module")
def guarded_url(env: dict[str, str], database: None, store: ObjectStore) -> Iterator[str]:
    with daemons.serve_api({**env, "METRICS_TOKEN": TOKEN}, "--workers", "1") as served:
        yield served.url


@pytest.fixture
async def guarded_api(guarded_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=guarded_url) as client:
        yield client


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", TOKEN.upper()],
    ids=["none", "empty", "no-token", "short", "long", "other"],
)
async def test_metrics_need_the_token_when_one_is_set(
    guarded_api: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    refused = await guarded_api.get("/metrics", headers=headers)
    assert refused.status_code == 401 and b"mediagate_" not in refused.content


async def test_the_token_opens_the_metrics(guarded_api: httpx.AsyncClient) -> None:
    allowed = await guarded_api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200 and b"mediagate_media{" in allowed.content
