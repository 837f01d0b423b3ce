"""The flow on Ceph's RADOS Gateway: what the store itself refuses, and real bucket events.

The S3 test server accepts any signature and sends no event; here the store enforces our
presigned URLs and tells RabbitMQ that an object arrived, as MinIO does in production.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

from mediagate.config import Settings
from mediagate.domain.status import MediaStatus
from mediagate.storage.object_store import ObjectStore
from tests.support import media
from tests.support.api import Tenant
from tests.support.broker import drain
from tests.support.flow import confirm, put_object, request_upload
from tests.support.rgw import RgwUser
from tests.support.worker_process import (
    WorkerProcess,
    dead_letters,
    wait_for_status,
    wait_until,
)

PHOTO = media.fixture("landscape_6.jpg")


def _key() -> str:
    return f"sessions/{uuid.uuid4()}/general/{uuid.uuid4()}.jpg"


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


def _put(url: str, data: bytes = b"\xff\xd8\xff\xe0data", **headers: str) -> httpx.Response:
    return httpx.put(url, content=data, headers={"Content-Type": "image/jpeg", **headers})


def test_setup_on_rgw_says_what_the_store_lacks(
    rgw_setup_report: list[str], rgw_settings: Settings, upload_user: RgwUser
) -> None:
    lines = dict(line.split(": ", 1) for line in rgw_setup_report)
    assert lines["bucket"] == "created"
    assert lines["notification"].startswith("sessions/* -> arn:aws:sns:")
    assert lines["policy"] == f"{upload_user.principal} may put under sessions/ set"
    with_sse = setup_storage_again(rgw_settings, s3_sse=True)
    assert any(
        line.startswith("encryption: skipped, the store does not support it") for line in with_sse
    ), with_sse
    assert "policy: " + f"{upload_user.principal} may put under sessions/ unchanged" in with_sse


def setup_storage_again(settings: Settings, *, s3_sse: bool) -> list[str]:
    from dataclasses import replace

    from mediagate.storage.setup import setup_storage

    return setup_storage(
        replace(settings, s3=replace(settings.s3, sse=s3_sse)),
        bucket_events=True,
        require_tls=False,
    )


def test_the_store_refuses_upload_urls_that_are_not_ours(rgw_store: ObjectStore) -> None:
    now = datetime.now(UTC)
    key = _key()
    url = rgw_store.presign_put(key, timedelta(minutes=5), now)
    assert urlsplit(url).hostname == "localhost", "signed for the public endpoint"

    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    tampered = _with_query(url, **{"X-Amz-Signature": signature[:-4] + "0000"})
    assert _put(tampered).status_code == 403
    other_key = url.replace(key, _key())
    assert _put(other_key).status_code == 403
    wrong_host = url.replace("//localhost:", "//127.0.0.1:")
    assert _put(wrong_host).status_code == 403, "the host is part of the signature"
    expired = rgw_store.presign_put(key, timedelta(seconds=60), now - timedelta(hours=1))
    assert _put(expired).status_code == 403
    unsigned = urlunsplit(urlsplit(url)._replace(query=""))
    assert _put(unsigned).status_code == 403
    assert _put(url).status_code == 200, "and the genuine URL works"


def test_a_url_signed_with_a_wrong_secret_is_refused(
    rgw_settings: Settings, upload_user: RgwUser
) -> None:
    from dataclasses import replace

    forged = ObjectStore(
        replace(rgw_settings, s3=replace(rgw_settings.s3, upload_secret_key="not-the-secret"))
    )
    url = forged.presign_put(_key(), timedelta(minutes=5), datetime.now(UTC))
    response = _put(url)
    assert response.status_code == 403 and b"SignatureDoesNotMatch" in response.content


@pytest.mark.parametrize("kind", ["processed copy", "another upload"])
def test_an_upload_url_cannot_copy_another_object(
    rgw_store: ObjectStore, rgw_settings: Settings, kind: str
) -> None:
    """The attack: PUT through our URL with x-amz-copy-source naming someone else's file."""
    if kind == "processed copy":
        secret = f"processed/{uuid.uuid4()}/other-org.jpg"
        rgw_store.client.put_object(rgw_settings.s3.bucket, secret, io.BytesIO(PHOTO), len(PHOTO))
    else:  # written with the upload credential itself, which owns it on RGW
        secret = _key()
        upload_url = rgw_store.presign_put(secret, timedelta(minutes=5), datetime.now(UTC))
        assert _put(upload_url, PHOTO).status_code == 200
    key = _key()
    url = rgw_store.presign_put(key, timedelta(minutes=5), datetime.now(UTC))
    copied = _put(url, b"", **{"x-amz-copy-source": f"/{rgw_settings.s3.bucket}/{secret}"})
    assert copied.status_code == 403, copied.text
    with pytest.raises(S3Error):
        rgw_store.client.stat_object(rgw_settings.s3.bucket, key)


def test_the_upload_credential_can_do_nothing_but_put_under_sessions(
    gateway: object, rgw_store: ObjectStore, rgw_settings: Settings, upload_user: RgwUser
) -> None:
    endpoint = urlsplit(rgw_settings.s3.endpoint).netloc
    uploader = Minio(
        endpoint,
        access_key=upload_user.access_key,
        secret_key=upload_user.secret_key,
        secure=False,
        region=rgw_settings.s3.region,
    )
    bucket = rgw_settings.s3.bucket
    mine = _key()
    uploader.put_object(bucket, mine, io.BytesIO(b"x"), 1)
    elsewhere = f"processed/{uuid.uuid4()}.jpg"
    rgw_store.client.put_object(bucket, elsewhere, io.BytesIO(b"y"), 1)
    refused: list[Callable[[], object]] = [
        lambda: uploader.put_object(bucket, f"processed/{uuid.uuid4()}.jpg", io.BytesIO(b"x"), 1),
        lambda: uploader.get_object(bucket, mine),  # even its own
        lambda: uploader.stat_object(bucket, mine),
        lambda: uploader.get_object(bucket, elsewhere),
        lambda: uploader.stat_object(bucket, elsewhere),
        lambda: list(uploader.list_objects(bucket, prefix="sessions/")),
        lambda: uploader.remove_object(bucket, mine),
        lambda: uploader.get_bucket_policy(bucket),
    ]
    for attempt in refused:
        with pytest.raises(S3Error) as caught:
            attempt()
        assert caught.value.code == "AccessDenied"


async def test_api_flow_over_real_http_on_rgw(
    rgw_client: httpx.AsyncClient, rgw_tenant: Tenant, rgw_settings: Settings
) -> None:
    ticket = await request_upload(rgw_client, rgw_tenant, "car.jpg", "image/jpeg")
    await put_object(ticket["uploadUrl"], PHOTO, "image/jpeg")
    body = await confirm(rgw_client, rgw_tenant, ticket["fileKey"], alt="the car")
    assert body["data"]["confirmUpload"]["status"] == "UPLOADED", body
    await drain(rgw_settings, rgw_settings.broker.media_queue)


def _processed_copies(store: ObjectStore, key: str) -> list[str]:
    stem = key.removeprefix("sessions/").rsplit(".", 1)[0]
    listed = store.client.list_objects(store.bucket, prefix=f"processed/{stem}", recursive=True)
    return [o.object_name or "" for o in listed]


async def test_rgws_own_event_alone_gets_an_upload_processed(
    rgw_worker: WorkerProcess,
    rgw_client: httpx.AsyncClient,
    rgw_tenant: Tenant,
    rgw_settings: Settings,
    rgw_store: ObjectStore,
) -> None:
    """PUT -> RGW's event -> RabbitMQ -> worker -> COMPLETED, no confirmUpload at all."""
    ticket = await request_upload(rgw_client, rgw_tenant, "car.jpg", "image/jpeg")
    key = ticket["fileKey"]
    await put_object(ticket["uploadUrl"], PHOTO, "image/jpeg")
    record = await wait_for_status(key, MediaStatus.COMPLETED, MediaStatus.REJECTED)
    assert record.status is MediaStatus.COMPLETED, record.rejection_reason
    assert record.uploaded_at is None, "nothing but the store's event moved it"
    (processed,) = _processed_copies(rgw_store, key)
    first_copy = rgw_store.client.stat_object(rgw_store.bucket, processed)

    # Then the client's confirm and a second real event for the same key (the browser
    # retried its PUT): still one row, one processed copy, no original left behind.
    body = await confirm(rgw_client, rgw_tenant, key, alt="after the fact")
    assert body["data"]["confirmUpload"]["status"] == "COMPLETED", body
    await put_object(ticket["uploadUrl"], PHOTO, "image/jpeg")

    async def original_gone_again() -> bool:
        return await rgw_store.head(key) is None

    await wait_until(original_gone_again, "the re-uploaded original was never cleaned up")
    assert _processed_copies(rgw_store, key) == [processed]
    again = rgw_store.client.stat_object(rgw_store.bucket, processed)
    assert again.etag == first_copy.etag and again.last_modified == first_copy.last_modified
    final = await wait_for_status(key, MediaStatus.COMPLETED)
    assert final.alt_text == "after the fact"


async def test_objects_outside_sessions_raise_no_event(
    rgw_worker: WorkerProcess,
    rgw_client: httpx.AsyncClient,
    rgw_tenant: Tenant,
    rgw_settings: Settings,
    rgw_store: ObjectStore,
) -> None:
    outside = f"elsewhere/{uuid.uuid4()}.jpg"
    rgw_store.client.put_object(rgw_store.bucket, outside, io.BytesIO(PHOTO), len(PHOTO))
    # A later upload under sessions/ completes: events are in order on one queue, so an
    # event for the first object, had there been one, was handled before this one.
    ticket = await request_upload(rgw_client, rgw_tenant, "car.jpg", "image/jpeg")
    await put_object(ticket["uploadUrl"], PHOTO, "image/jpeg")
    await wait_for_status(ticket["fileKey"], MediaStatus.COMPLETED)
    assert rgw_store.client.stat_object(rgw_store.bucket, outside).size == len(PHOTO)
    assert await dead_letters(rgw_settings) == []
