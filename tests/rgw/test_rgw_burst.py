"""500 uploads started at once on Ceph RGW, with its real bucket events, through two API
and two worker processes on the three-node cluster: each one COMPLETED exactly once,
none lost, nothing dead-lettered.

An upload reaches the workers once or twice (RGW's event, and confirmUpload's job when
the event has not moved the row yet), so "processed once" is checked, not assumed.
Every tenth client closes after its PUT, as a browser tab does: those uploads have
nothing but RGW's event.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mediagate.config import Settings, load_settings
from mediagate.db.engine import pool
from mediagate.events.topology import dead_letter_queue_name
from mediagate.storage.object_store import ObjectStore
from mediagate.storage.setup import setup_storage
from tests.support import daemons, media
from tests.support.api import new_tenant
from tests.support.broker import drain
from tests.support.daemons import serve_api
from tests.support.flow import burst, put_object, request_upload, upload
from tests.support.metrics import worker_samples
from tests.support.outcomes import all_completed, completed_once_each
from tests.support.rabbit_cluster import Cluster
from tests.support.rgw import CephGateway, rgw_environment
from tests.support.worker_process import WorkerProcess, wait_until

PHOTO = media.fixture("landscape_5.jpg")
UPLOADS = 500
CLIENT_TASKS = 16
PUT_ONLY_EVERY = 10


@pytest.fixture(scope="module")
def civetweb_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephGateway]:
    """A gateway of its own on civetweb: beast segfaults under this burst now and then
    (tests/support/rgw.py)."""
    ceph = CephGateway(tmp_path_factory.mktemp("ceph-civetweb"), frontend="civetweb")
    ceph.start()
    yield ceph
    ceph.stop()


@pytest.fixture
def burst_env(
    database_url: str, settings: Settings, civetweb_gateway: CephGateway, cluster: Cluster
) -> dict[str, str]:
    """The gateway on the cluster, with a bucket, queues and an RGW topic of its own.
    RGW's push endpoint takes one URL: the first node, the default (the README puts a
    load balancer there)."""
    run = uuid.uuid4().hex[:8]
    users = [civetweb_gateway.create_user(f"{name}-{run}") for name in ("service", "upload")]
    return rgw_environment(
        database_url,
        civetweb_gateway,
        *users,
        CLAMAV_PORT=str(settings.scanner.port),
        AMQP_URL=cluster.amqp_url,
        QUEUE_TYPE="quorum",
        AMQP_PUBLISH_TIMEOUT="15",
        BUCKET_EVENTS_ROUTING_KEY=f"burst-{run}",
        MAX_PENDING_UPLOADS_PER_USER=str(UPLOADS),
    )


async def _nothing_midway() -> None:
    return None


async def test_500_uploads_at_once_on_rgw_complete_once_each(
    burst_env: dict[str, str],
    cluster: Cluster,
    clamd: daemons.Clamd,
    database: None,
    tmp_path: Path,
) -> None:
    env = burst_env
    settings = load_settings(env)
    setup_storage(settings, bucket_events=True, require_tls=False)
    store = ObjectStore(settings)
    tenant = await new_tenant(settings)
    first_node = load_settings({**env, "AMQP_URL": cluster.nodes[0].url})

    started = itertools.count()

    async def upload_one(client: httpx.AsyncClient) -> None:
        if next(started) % PUT_ONLY_EVERY:
            await upload(client, tenant, PHOTO)
        else:
            ticket = await request_upload(client, tenant)
            await put_object(ticket["uploadUrl"], PHOTO, "image/jpeg")

    ports = [daemons.free_port(), daemons.free_port()]
    workers = [WorkerProcess({**env, "WORKER_METRICS_PORT": str(port)}) for port in ports]

    def jobs(result: str) -> float:
        key = ("mediagate_worker_jobs_total", (result,))
        return sum(worker_samples(port).get(key, 0.0) for port in ports)

    async def counted() -> bool:
        return jobs("completed") >= UPLOADS

    with serve_api(env, "--workers", "2", log=tmp_path / "api.log") as served:
        try:
            for worker in workers:
                await worker.start(first_node)
            await burst(served.url, UPLOADS, CLIENT_TASKS, upload_one, _nothing_midway)
            await all_completed(tenant.session_id, UPLOADS, timeout=600)
            await wait_until(counted, "the workers did not count every upload")
            assert jobs("completed") == UPLOADS
            assert jobs("rejected") == jobs("virus") == jobs("scan_failed") == 0
        finally:
            for worker in workers:
                worker.stop()
    await completed_once_each(tenant.session_id, store)
    assert await drain(first_node, dead_letter_queue_name(settings)) == []
    # The uploads no client confirmed: RGW's events moved them, nothing else.
    unconfirmed = await pool().fetchval(
        "SELECT count(*) FROM session_media WHERE session_id = $1 AND uploaded_at IS NULL",
        tenant.session_id,
    )
    assert unconfirmed >= UPLOADS // PUT_ONLY_EVERY
