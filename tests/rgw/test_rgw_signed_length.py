"""The size a client declares is signed into its URLs, and the store itself (Ceph RGW
checks signatures) refuses a body of any other length: nothing past the limit is ever
written, not even for a moment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from minio.error import S3Error

from mediagate.config import Settings
from mediagate.domain.status import MediaStatus
from mediagate.storage.object_store import ObjectStore
from tests.support import media
from tests.support.api import Tenant, graphql
from tests.support.flow import confirm
from tests.support.multipart import COMPLETE, call, completed, put_part, start
from tests.support.readback import row

PHOTO = media.fixture("landscape_6.jpg")
SIZED_URL = """
mutation Url($sessionId: UUID!, $size: Long) {
  getUploadUrl(sessionId: $sessionId, filename: "p.jpg", contentType: "image/jpeg", size: $size) {
    uploadUrl fileKey
  }
}
"""


def _put(url: str, data: bytes) -> httpx.Response:
    return httpx.put(url, content=data, headers={"Content-Type": "image/jpeg"})


def _stored(store: ObjectStore, settings: Settings, key: str) -> bool:
    try:
        store.client.stat_object(settings.s3.bucket, key)
    except S3Error:
        return False
    return True


@pytest.mark.parametrize("off_by", [1, -1, 1000, -(len(PHOTO) - 1)])
def test_a_body_of_another_length_than_signed_is_refused_by_the_store(
    rgw_store: ObjectStore, rgw_settings: Settings, off_by: int
) -> None:
    key = f"sessions/{uuid.uuid4()}/general/{uuid.uuid4()}.jpg"
    url = rgw_store.presign_put(key, timedelta(minutes=5), datetime.now(UTC), len(PHOTO))
    signed = parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0]
    assert signed.split(";") == ["content-length", "host"]
    body = PHOTO + b"\0" * off_by if off_by > 0 else PHOTO[:off_by]
    refused = _put(url, body)
    assert refused.status_code == 403, refused.text
    assert not _stored(rgw_store, rgw_settings, key), "nothing stored"
    assert _put(url, PHOTO).status_code == 200, "the exact size is accepted"
    assert _stored(rgw_store, rgw_settings, key)


async def test_the_api_signs_the_declared_size_and_the_upload_completes(
    rgw_client: httpx.AsyncClient, rgw_tenant: Tenant
) -> None:
    body = await graphql(
        rgw_client,
        SIZED_URL,
        {"sessionId": str(rgw_tenant.session_id), "size": str(len(PHOTO))},
        rgw_tenant.token,
    )
    ticket = body["data"]["getUploadUrl"]
    assert _put(ticket["uploadUrl"], PHOTO + b"x").status_code == 403
    assert _put(ticket["uploadUrl"], PHOTO).status_code == 200
    confirmed = await confirm(rgw_client, rgw_tenant, ticket["fileKey"])
    assert confirmed["data"]["confirmUpload"]["status"] == "UPLOADED", confirmed
    assert (await row(ticket["fileKey"])).declared_size == len(PHOTO)


async def test_a_part_of_another_size_than_its_own_is_refused_by_the_store(
    rgw_client: httpx.AsyncClient, rgw_tenant: Tenant, rgw_settings: Settings
) -> None:
    part_size = rgw_settings.uploads.multipart_part_size
    size = part_size + 1234  # two parts: a full one and the rest
    data = (PHOTO * (size // len(PHOTO) + 1))[:size]
    started = await start(rgw_client, rgw_tenant, str(size))
    ticket = started["data"]["startMultipartUpload"]
    urls = {part["partNumber"]: part["url"] for part in ticket["parts"]}
    first, last = data[:part_size], data[part_size:]
    async with httpx.AsyncClient(timeout=120) as s3:
        for number, wrong in ((1, first[:-1]), (2, last + b"x"), (2, first)):
            refused = await s3.put(urls[number], content=wrong)
            assert refused.status_code == 403, (number, len(wrong), refused.text)
    etags = {1: await put_part(urls[1], first), 2: await put_part(urls[2], last)}
    done = await call(rgw_client, rgw_tenant, COMPLETE, ticket, parts=completed(etags))
    assert done["data"]["completeMultipartUpload"]["status"] == "UPLOADED", done
    record = await row(ticket["fileKey"])
    assert record.status is MediaStatus.UPLOADED and record.file_size == size
