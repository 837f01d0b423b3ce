"""The bucket's lifecycle as `storage setup` leaves it, run by Ceph RGW itself: incomplete
multipart uploads under sessions/ are aborted, and an original kept for review (or
waiting out a scanner outage) survives however many days pass.

A gateway of its own, whose day lasts a few seconds (`rgw lc debug interval`), so that
the other RGW tests' open uploads are not aborted under them."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator

import pytest

from mediagate.config import Settings, load_settings
from mediagate.storage.multipart import MultipartUploads
from mediagate.storage.object_store import ObjectStore
from mediagate.storage.setup import setup_storage
from tests.support.environment import make_env
from tests.support.rgw import CephGateway

DAY_SECONDS = 2


@pytest.fixture(scope="module")
def short_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephGateway]:
    ceph = CephGateway(
        tmp_path_factory.mktemp("ceph-lc"),
        memstore_bytes=256 * 1024**2,
        gateway_config=f"rgw lc debug interval = {DAY_SECONDS}",
    )
    ceph.start()
    yield ceph
    ceph.stop()


@pytest.fixture(scope="module")
def lc_settings(short_days: CephGateway, database_url: str, settings: Settings) -> Settings:
    user = short_days.create_user("mediagate-lc")
    env = make_env(
        database_url,
        short_days.endpoint,
        CLAMAV_PORT=str(settings.scanner.port),
        **user.sole_credential(),
    )
    return load_settings(env)


async def test_lifecycle_aborts_abandoned_uploads_and_keeps_every_original(
    short_days: CephGateway, lc_settings: Settings
) -> None:
    report = setup_storage(lc_settings, bucket_events=False, require_tls=False)
    assert "lifecycle: multipart uploads left for 1 day are aborted; no object expires" in report
    store = ObjectStore(lc_settings)
    session = uuid.uuid4()
    kept = f"sessions/{session}/general/{uuid.uuid4()}.jpg"  # a SCAN_FAILED original, say
    store.client.put_object(store.bucket, kept, io.BytesIO(b"kept for review"), 15)
    uploads = MultipartUploads(store)
    abandoned = f"sessions/{session}/general/{uuid.uuid4()}.mp4"
    await uploads.create(abandoned, "video/mp4")

    # Until the gateway has aborted the abandoned upload, a day after it began: proof
    # that its lifecycle ran our rule over the prefix when the original written before
    # it was more than a day old too (the retired rule expired it in that same pass).
    deadline = time.monotonic() + 120
    while await uploads.open_uploads(abandoned, 10):
        assert time.monotonic() < deadline, "the gateway never aborted the abandoned upload"
        short_days.process_lifecycle()

    assert await store.head(kept) is not None, "an original expired by rule"
