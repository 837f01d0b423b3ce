"""The store out of reach for 30 s in the middle of a burst: the API answers a typed
SERVICE_UNAVAILABLE where it needs the store, the worker retries, and every upload ends
COMPLETED: nothing is REJECTED for it."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from mediagate.config import load_settings
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.environment import own_names
from tests.support.flow import burst, served_with_a_worker, upload_until_available
from tests.support.outcomes import all_completed, statuses
from tests.support.tcp_proxy import CuttableProxy
from tests.support.worker_process import dead_letters, wait_until

PHOTO = media.fixture("landscape_3.jpg")
UPLOADS = 30
CLIENT_TASKS = 8
OUTAGE_SECONDS = 30.0


async def test_the_store_out_of_reach_for_30_seconds_is_waited_out(
    env: dict[str, str],
    s3_endpoint: str,
    clamd: daemons.Clamd,
    store: ObjectStore,
    api: httpx.AsyncClient,
    tenant: Tenant,
    tmp_path: Path,
) -> None:
    direct = urlsplit(s3_endpoint)
    assert direct.hostname is not None and direct.port is not None
    proxy = CuttableProxy(direct.hostname, direct.port)
    await proxy.start()
    # mediagate reaches the store through the proxy; browsers' PUTs go straight to it.
    own = {
        **env,
        "S3_ENDPOINT": proxy.url,
        "S3_PUBLIC_ENDPOINT": s3_endpoint,
        **own_names("storeoutage"),
    }
    settings = load_settings(own)
    answers: Counter[str] = Counter()

    async def upload_one(client: httpx.AsyncClient) -> None:
        await upload_until_available(client, tenant, PHOTO, answers)

    try:
        async with served_with_a_worker(own, settings, tmp_path / "api.log") as served:

            async def outage_midway() -> None:
                async def some_completed() -> bool:
                    return (await statuses(tenant.session_id)).get("COMPLETED", 0) >= 5

                await wait_until(some_completed, "nothing completed before the outage")
                proxy.cut()
                # One more upload during the outage: confirmUpload needs the store, so
                # it is asked again until the store is back.
                async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
                    during = asyncio.create_task(
                        upload_until_available(client, tenant, PHOTO, answers)
                    )
                    await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait
                    proxy.mend()
                    await during

            await burst(served.url, UPLOADS, CLIENT_TASKS, upload_one, outage_midway)
            await all_completed(tenant.session_id, UPLOADS + 1, timeout=180)
    finally:
        await proxy.close()
    assert await statuses(tenant.session_id) == {"COMPLETED": UPLOADS + 1}
    assert answers["SERVICE_UNAVAILABLE"] >= 1, "confirmUpload needs the store: it waited"
    assert answers["INTERNAL_SERVER_ERROR"] == 0, answers
    assert await dead_letters(settings) == []
