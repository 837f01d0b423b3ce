"""Multipart uploads on Ceph RGW, a store that checks every part URL's signature and
expiry, enforces the upload credential's grants, and sends its own event when the
service completes an upload."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

from mediagate.config import Settings
from mediagate.domain.multipart import Part
from mediagate.domain.status import MediaStatus
from mediagate.storage.multipart import MultipartUploads
from mediagate.storage.object_store import ObjectStore
from tests.support import media
from tests.support.api import Tenant
from tests.support.multipart import (
    COMPLETE,
    call,
    completed,
    put_part,
    race_complete_and_abort,
    read_part,
    start,
)
from tests.support.rgw import RgwUser
from tests.support.worker_process import WorkerProcess, wait_for_status, wait_until

MIB = 1024 * 1024
IN_FLIGHT_OR_DONE = {"UPLOADED", "SCANNING", "PROCESSING", "COMPLETED"}


def _key() -> str:
    return f"sessions/{uuid.uuid4()}/general/{uuid.uuid4()}.mp4"


async def test_parts_through_rgw_complete_and_rgws_event_gets_them_processed(
    rgw_worker: WorkerProcess,
    rgw_client: httpx.AsyncClient,
    rgw_tenant: Tenant,
    rgw_store: ObjectStore,
    tmp_path: Path,
) -> None:
    source = media.padded_video(tmp_path / "car.mp4", 20 * MIB)
    body = await start(rgw_client, rgw_tenant, 20 * MIB)
    assert "errors" not in body, body
    ticket = body["data"]["startMultipartUpload"]
    assert ticket["partCount"] == 2, body
    etags = {
        part["partNumber"]: await put_part(
            part["url"], read_part(source, part["partNumber"], ticket["partSize"])
        )
        for part in ticket["parts"]
    }
    done = await call(rgw_client, rgw_tenant, COMPLETE, ticket, parts=completed(etags))
    assert "errors" not in done, done
    # RGW's event may have reached the worker before this answer.
    assert done["data"]["completeMultipartUpload"]["status"] in IN_FLIGHT_OR_DONE, done
    record = await wait_for_status(ticket["fileKey"], MediaStatus.COMPLETED, MediaStatus.REJECTED)
    assert record.status is MediaStatus.COMPLETED, record.rejection_reason

    async def original_deleted() -> bool:  # after the COMPLETED commit, never before
        return await rgw_store.head(ticket["fileKey"]) is None

    await wait_until(original_deleted, "the original was never deleted")


async def test_complete_and_abort_at_once_on_rgw_one_wins_cleanly(
    rgw_client: httpx.AsyncClient, rgw_tenant: Tenant, rgw_store: ObjectStore
) -> None:
    winners = await race_complete_and_abort(rgw_client, rgw_tenant, rgw_store, rounds=16)
    assert len(winners) == 16


async def _put(url: str, content: bytes) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.put(url, content=content)


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


async def test_rgw_refuses_a_part_url_that_expired_or_was_altered_and_takes_a_valid_one(
    rgw_store: ObjectStore,
) -> None:
    key = _key()
    uploads = MultipartUploads(rgw_store)
    upload_id = await uploads.create(key, "video/mp4")
    try:
        long_ago = datetime.now(UTC) - timedelta(minutes=10)
        expired = rgw_store.presign_upload_part(key, upload_id, 1, timedelta(minutes=5), long_ago)
        response = await _put(expired, content=b"x" * 1024)
        assert response.status_code == 403, response.text

        valid = rgw_store.presign_upload_part(
            key, upload_id, 1, timedelta(minutes=5), datetime.now(UTC)
        )
        other_part = await _put(_with_query(valid, partNumber="2"), content=b"x" * 1024)
        assert other_part.status_code == 403 and b"SignatureDoesNotMatch" in other_part.content
        sent = await _put(valid, content=b"x" * 1024)
        assert sent.status_code == 200
        assert [part.number for part in await uploads.parts(key, upload_id)] == [1]
        # The ETag as a browser reads it, quoted: completes as the store listed it.
        await uploads.complete(key, upload_id, [Part(1, sent.headers["ETag"])])
        assert (await rgw_store.head(key)).size == 1024  # type: ignore[union-attr]
    finally:
        await uploads.abort(key, upload_id)
        await rgw_store.delete(key)


def test_the_upload_credential_cannot_list_or_abort_an_upload(
    rgw_store: ObjectStore, rgw_settings: Settings, upload_user: RgwUser
) -> None:
    """Part URLs carry the upload credential: it may put parts, and nothing more."""
    uploader = Minio(
        urlsplit(rgw_settings.s3.endpoint).netloc,
        access_key=upload_user.access_key,
        secret_key=upload_user.secret_key,
        secure=False,
        region=rgw_settings.s3.region,
    )
    key, bucket = _key(), rgw_settings.s3.bucket
    upload_id = rgw_store.client._create_multipart_upload(bucket, key, {})
    try:
        refused: list[Callable[[], object]] = [
            lambda: uploader._list_parts(bucket, key, upload_id),
            lambda: uploader._abort_multipart_upload(bucket, key, upload_id),
            lambda: uploader._list_multipart_uploads(bucket, prefix="sessions/"),
        ]
        for attempt in refused:
            with pytest.raises(S3Error) as caught:
                attempt()
            assert caught.value.code == "AccessDenied"
    finally:
        rgw_store.client._abort_multipart_upload(bucket, key, upload_id)
