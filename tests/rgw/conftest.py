"""A Ceph RADOS Gateway for the flow tests: a store that checks signatures and sends
events (mediagate's settings for it: tests/support/rgw.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from mediagate.config import Settings, load_settings
from mediagate.storage.object_store import ObjectStore
from mediagate.storage.setup import setup_storage
from tests.support import daemons
from tests.support.api import Tenant, new_tenant
from tests.support.broker import drain
from tests.support.rgw import CephGateway, RgwUser, rgw_environment
from tests.support.worker_process import WorkerProcess


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephGateway]:
    ceph = CephGateway(tmp_path_factory.mktemp("ceph"))
    ceph.start()
    yield ceph
    ceph.stop()


@pytest.fixture(scope="session")
def service_user(gateway: CephGateway) -> RgwUser:
    return gateway.create_user("mediagate")


@pytest.fixture(scope="session")
def upload_user(gateway: CephGateway) -> RgwUser:
    return gateway.create_user("mediagate-upload")


@pytest.fixture(scope="session")
def rgw_env(
    database_url: str,
    settings: Settings,
    gateway: CephGateway,
    service_user: RgwUser,
    upload_user: RgwUser,
) -> dict[str, str]:
    # The clamd the other tests use.
    port = str(settings.scanner.port)
    return rgw_environment(database_url, gateway, service_user, upload_user, CLAMAV_PORT=port)


@pytest.fixture(scope="session")
def rgw_settings(rgw_env: dict[str, str]) -> Settings:
    return load_settings(rgw_env)


@pytest.fixture(scope="session")
def rgw_setup_report(rgw_settings: Settings) -> list[str]:
    return setup_storage(rgw_settings, bucket_events=True, require_tls=False)


@pytest.fixture(scope="session")
def rgw_store(rgw_settings: Settings, rgw_setup_report: list[str]) -> ObjectStore:
    return ObjectStore(rgw_settings)


@pytest.fixture(scope="session")
def rgw_api(rgw_env: dict[str, str], database: None, rgw_store: ObjectStore) -> Iterator[str]:
    with daemons.serve_api(rgw_env) as served:
        yield served.url


@pytest.fixture
async def rgw_tenant(rgw_settings: Settings, database: None) -> Tenant:
    return await new_tenant(rgw_settings)


@pytest.fixture
async def rgw_client(rgw_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=rgw_api) as client:
        yield client


@pytest.fixture
async def rgw_worker(
    rgw_env: dict[str, str], rgw_settings: Settings, clamd: daemons.Clamd, rgw_api: str
) -> AsyncIterator[WorkerProcess]:
    await drain(rgw_settings, rgw_settings.broker.media_queue)
    worker = WorkerProcess(rgw_env)
    await worker.start(rgw_settings)
    yield worker
    worker.stop()
