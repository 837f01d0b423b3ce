"""Flows whose outcome must not depend on the store: the same checks as on the S3 test
server, run against RGW with its own signatures, ownership and content types."""

from __future__ import annotations

import httpx
import pytest

from mediagate.config import Settings
from mediagate.domain.status import MediaStatus
from mediagate.processing.isolation import DecoderPool
from mediagate.scanning.clamav import ClamdScanner
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.retries import Done
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.flow import confirm, put_object, request_upload
from tests.support.readback import row


@pytest.fixture(scope="module")
def rgw_pipeline(
    rgw_settings: Settings, rgw_store: ObjectStore, clamd: daemons.Clamd, decoders: DecoderPool
) -> MediaPipeline:
    scanner = ClamdScanner(
        rgw_settings.scanner.host, rgw_settings.scanner.port, rgw_settings.scanner.timeout
    )
    return MediaPipeline(rgw_settings, rgw_store, scanner, decoders)


async def _uploaded(
    client: httpx.AsyncClient, tenant: Tenant, data: bytes, filename: str, content_type: str
) -> str:
    ticket = await request_upload(client, tenant, filename, content_type)
    await put_object(ticket["uploadUrl"], data, content_type)
    body = await confirm(client, tenant, ticket["fileKey"])
    assert body["data"]["confirmUpload"]["status"] == "UPLOADED", body
    key: str = ticket["fileKey"]
    return key


@pytest.mark.parametrize(
    ("data", "filename", "content_type", "status", "reason"),
    [
        (media.fixture("landscape_8.jpg"), "a.jpg", "image/jpeg", MediaStatus.COMPLETED, None),
        (media.eicar(), "v.jpg", "image/jpeg", MediaStatus.REJECTED, "virus detected"),
        (media.image_bytes("PNG"), "p.jpg", "image/jpeg", MediaStatus.REJECTED, "not image/jpeg"),
        (media.png_bomb(), "b.png", "image/png", MediaStatus.REJECTED, "limit is 60000000"),
    ],
    ids=["photo", "eicar", "png-bytes-as-jpeg", "png-bomb"],
)
async def test_the_pipeline_on_rgw(
    rgw_client: httpx.AsyncClient,
    rgw_tenant: Tenant,
    rgw_pipeline: MediaPipeline,
    rgw_store: ObjectStore,
    data: bytes,
    filename: str,
    content_type: str,
    status: MediaStatus,
    reason: str | None,
) -> None:
    key = await _uploaded(rgw_client, rgw_tenant, data, filename, content_type)
    assert isinstance(await rgw_pipeline.handle(key, 0), Done)
    record = await row(key)
    assert record.status is status, record.rejection_reason
    if reason is not None:
        assert record.rejection_reason is not None and reason in record.rejection_reason
    else:
        assert record.processed_key is not None
        stored = rgw_store.client.stat_object(rgw_store.bucket, record.processed_key)
        assert stored.content_type == "image/jpeg"
    assert await rgw_store.head(key) is None, "the original is gone either way"


@pytest.mark.parametrize(
    ("data", "sent_type", "reason"),
    [(b"", "image/jpeg", "empty"), (b"\xff\xd8\xff\xe0" + b"0" * 100, "image/png", "sent as")],
    ids=["empty", "stored-type-differs"],
)
async def test_confirm_checks_what_rgw_stored(
    rgw_client: httpx.AsyncClient,
    rgw_tenant: Tenant,
    rgw_store: ObjectStore,
    data: bytes,
    sent_type: str,
    reason: str,
) -> None:
    ticket = await request_upload(rgw_client, rgw_tenant, "a.jpg", "image/jpeg")
    await put_object(ticket["uploadUrl"], data, sent_type)
    body = await confirm(rgw_client, rgw_tenant, ticket["fileKey"])
    result = body["data"]["confirmUpload"]
    assert result["status"] == "REJECTED" and reason in result["rejectionReason"]
    assert await rgw_store.head(ticket["fileKey"]) is None
