"""The spec's API checklist on the real stack: PostgreSQL, RabbitMQ, the S3 server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx

from mediagate.config import Settings
from mediagate.db import media_rows as repo
from mediagate.domain.status import MediaStatus
from mediagate.services.uploads import UploadService
from mediagate.storage.object_store import ObjectStore
from tests.support.api import Tenant, error_codes, graphql
from tests.support.flow import (
    MEDIA,
    SESSION_MEDIA,
    confirm,
    drain_jobs,
    put_object,
    request_upload,
    upload,
)

JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"\x00" * 1000


async def test_full_flow_presign_put_confirm_queues_one_job(
    api: httpx.AsyncClient, settings: Settings, store: ObjectStore, tenant: Tenant
) -> None:
    await drain_jobs(settings)
    ticket = await request_upload(api, tenant, "front bumper.JPG", "IMAGE/JPEG", "inspection")
    key = ticket["fileKey"]
    assert ticket["expiresIn"] == settings.uploads.upload_url_ttl
    assert key.startswith(f"sessions/{tenant.session_id}/inspection/") and key.endswith(".jpg")
    assert urlsplit(ticket["uploadUrl"]).path == f"/{settings.s3.bucket}/{key}"
    # Signed by the upload credential (put-only under sessions/), not the service's own.
    signed_by = parse_qs(urlsplit(ticket["uploadUrl"]).query)["X-Amz-Credential"][0]
    assert signed_by.split("/")[0] == settings.s3.upload_access_key != settings.s3.access_key

    pending = await repo.find_by_key(key)
    assert pending is not None and pending.status is MediaStatus.PENDING_UPLOAD
    assert pending.content_type == "image/jpeg"
    assert pending.original_filename == "front bumper.JPG"
    assert pending.uploaded_by == tenant.principal.user_id
    expected_expiry = datetime.now(UTC) + timedelta(seconds=settings.uploads.upload_url_ttl)
    assert abs((pending.upload_expires_at - expected_expiry).total_seconds()) < 5

    await put_object(ticket["uploadUrl"], JPEG_BYTES, "image/jpeg")
    body = await confirm(api, tenant, key, alt="front bumper, left")
    assert "errors" not in body, body
    result = body["data"]["confirmUpload"]
    assert result["status"] == "UPLOADED"
    assert result["alt"] == "front bumper, left"
    assert result["id"] == str(pending.id)
    # The URL handed back is for the processed copy, never the unscanned original.
    assert urlsplit(result["url"]).path.startswith(f"/{settings.s3.bucket}/processed/")
    read_by = parse_qs(urlsplit(result["url"]).query)["X-Amz-Credential"][0]
    assert read_by.split("/")[0] == settings.s3.access_key
    async with httpx.AsyncClient() as client:
        assert (await client.get(result["url"])).status_code == 404

    row = await repo.find_by_key(key)
    assert row is not None and row.status is MediaStatus.UPLOADED
    assert row.file_size == len(JPEG_BYTES) and row.alt_text == "front bumper, left"
    assert row.uploaded_at is not None

    jobs = await drain_jobs(settings)
    assert [(job["mediaId"], job["fileKey"]) for job in jobs] == [(str(row.id), key)]
    assert jobs[0]["sessionId"] == str(tenant.session_id)
    assert jobs[0]["_delivery_mode"] == 2  # persistent


async def test_status_queries_show_the_sessions_media(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    confirmed = await upload(api, tenant, JPEG_BYTES)
    await request_upload(api, tenant, "later.png", "image/png", "intake")
    await drain_jobs(settings)

    body = await graphql(api, MEDIA, {"id": confirmed["id"]}, tenant.token)
    media = body["data"]["media"]
    assert media["status"] == "UPLOADED" and media["fileKey"] == confirmed["fileKey"]
    assert media["url"] is None  # nothing to download before the scan
    assert media["sessionId"] == str(tenant.session_id)
    assert media["fileSize"] == len(JPEG_BYTES)

    listed = await graphql(api, SESSION_MEDIA, {"sessionId": str(tenant.session_id)}, tenant.token)
    statuses = [(m["stage"], m["status"]) for m in listed["data"]["sessionMedia"]]
    assert statuses == [("inspection", "UPLOADED"), ("intake", "PENDING_UPLOAD")]
    only_intake = await graphql(
        api, SESSION_MEDIA, {"sessionId": str(tenant.session_id), "stage": "intake"}, tenant.token
    )
    assert [m["stage"] for m in only_intake["data"]["sessionMedia"]] == ["intake"]


async def test_confirm_of_an_object_never_uploaded_is_bad_input_and_changes_nothing(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    ticket = await request_upload(api, tenant)
    body = await confirm(api, tenant, ticket["fileKey"])
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["data"] is None
    row = await repo.find_by_key(ticket["fileKey"])
    assert row is not None and row.status is MediaStatus.PENDING_UPLOAD


async def _rejected(
    api: httpx.AsyncClient, store: ObjectStore, tenant: Tenant, data: bytes, sent_type: str
) -> tuple[dict[str, str], str]:
    ticket = await request_upload(api, tenant, "photo.jpg", "image/jpeg")
    await put_object(ticket["uploadUrl"], data, sent_type)
    body = await confirm(api, tenant, ticket["fileKey"])
    result = body["data"]["confirmUpload"]
    assert result["status"] == "REJECTED"
    assert await store.head(ticket["fileKey"]) is None, "a rejected upload is deleted"
    row = await repo.find_by_key(ticket["fileKey"])
    assert row is not None and row.status is MediaStatus.REJECTED
    assert row.rejection_reason == result["rejectionReason"]
    return result, ticket["fileKey"]


async def test_empty_upload_is_rejected_and_deleted(
    api: httpx.AsyncClient, settings: Settings, store: ObjectStore, tenant: Tenant
) -> None:
    await drain_jobs(settings)
    result, _ = await _rejected(api, store, tenant, b"", "image/jpeg")
    assert "empty" in result["rejectionReason"]
    assert await drain_jobs(settings) == []


async def test_oversize_upload_is_rejected_and_deleted(
    api: httpx.AsyncClient, settings: Settings, store: ObjectStore, tenant: Tenant
) -> None:
    data = JPEG_BYTES + b"\x00" * (settings.uploads.max_image_bytes - len(JPEG_BYTES) + 1)
    result, _ = await _rejected(api, store, tenant, data, "image/jpeg")
    assert f"limit is {settings.uploads.max_image_bytes}" in result["rejectionReason"]


async def test_content_type_mismatch_is_rejected_and_deleted(
    api: httpx.AsyncClient, store: ObjectStore, tenant: Tenant
) -> None:
    result, _ = await _rejected(api, store, tenant, b"<html></html>", "text/html")
    assert "text/html" in result["rejectionReason"]


async def test_upload_written_after_the_url_expired_is_rejected(
    settings: Settings, store: ObjectStore, tenant: Tenant, database: None
) -> None:
    issued_at = datetime.now(UTC) - timedelta(seconds=settings.uploads.upload_url_ttl + 60)

    class NoJobs:
        async def publish(self, job: object) -> None:
            raise AssertionError("an expired upload must not be queued")

    past = UploadService(settings, store, NoJobs(), clock=lambda: issued_at)
    ticket = await past.request_upload(
        tenant.principal, tenant.session_id, "a.jpg", "image/jpeg", None, "test"
    )
    # The S3 test server does not enforce expiry; MinIO would refuse this PUT outright.
    await put_object(ticket.upload_url, JPEG_BYTES, "image/jpeg")
    now = UploadService(settings, store, NoJobs())
    view = await now.confirm_upload(
        tenant.principal, tenant.session_id, ticket.file_key, None, None, "test"
    )
    assert view.status is MediaStatus.REJECTED
    assert view.rejection_reason == "the file was written after the upload URL expired"
    assert await store.head(ticket.file_key) is None


async def test_fifty_concurrent_uploads_all_land_with_distinct_keys(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    await drain_jobs(settings)
    results = await asyncio.gather(
        *(upload(api, tenant, JPEG_BYTES + bytes([i])) for i in range(50))
    )
    keys = {result["fileKey"] for result in results}
    assert len(keys) == 50
    assert {result["status"] for result in results} == {"UPLOADED"}
    jobs = await drain_jobs(settings)
    assert sorted(job["fileKey"] for job in jobs) == sorted(keys)
    for key in keys:
        row = await repo.find_by_key(key)
        assert row is not None and row.status is MediaStatus.UPLOADED


async def test_double_and_concurrent_confirm_change_the_row_once_and_publish_once(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    await drain_jobs(settings)
    ticket = await request_upload(api, tenant)
    await put_object(ticket["uploadUrl"], JPEG_BYTES, "image/jpeg")
    bodies = await asyncio.gather(
        *(confirm(api, tenant, ticket["fileKey"], alt=f"alt {i}") for i in range(8))
    )
    assert all("errors" not in body for body in bodies), bodies
    results = [body["data"]["confirmUpload"] for body in bodies]
    assert {r["status"] for r in results} == {"UPLOADED"}
    assert len({r["id"] for r in results}) == 1
    row = await repo.find_by_key(ticket["fileKey"])
    assert row is not None
    assert {r["alt"] for r in results} == {row.alt_text}, "every caller sees the one winner"
    again = await confirm(api, tenant, ticket["fileKey"], alt="later")
    assert again["data"]["confirmUpload"]["alt"] == row.alt_text
    jobs = await drain_jobs(settings)
    assert [job["fileKey"] for job in jobs] == [ticket["fileKey"]]


async def test_fifty_concurrent_presigns_have_distinct_keys(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    tickets = await asyncio.gather(*(request_upload(api, tenant) for _ in range(50)))
    assert len({t["fileKey"] for t in tickets}) == 50


async def test_broker_down_at_confirm_is_retryable_and_leaves_the_row_pending(
    settings: Settings, store: ObjectStore, tenant: Tenant, database: None
) -> None:
    from mediagate.errors import ServiceUnavailable
    from mediagate.events.publisher import JobPublisher

    publisher = await JobPublisher.connect(settings)
    await publisher.close()  # the broker is unreachable from here on
    service = UploadService(settings, store, publisher)
    ticket = await service.request_upload(
        tenant.principal, tenant.session_id, "a.jpg", "image/jpeg", None, "test"
    )
    await put_object(ticket.upload_url, JPEG_BYTES, "image/jpeg")
    try:
        await service.confirm_upload(
            tenant.principal, tenant.session_id, ticket.file_key, None, "x", "test"
        )
        raise AssertionError("confirm must fail while the broker is down")
    except ServiceUnavailable:
        pass
    row = await repo.find_by_key(ticket.file_key)
    assert row is not None and row.status is MediaStatus.PENDING_UPLOAD and row.alt_text is None


async def test_media_of_an_unknown_id_is_not_found(api: httpx.AsyncClient, tenant: Tenant) -> None:
    body = await graphql(api, MEDIA, {"id": str(uuid.uuid4())}, tenant.token)
    assert error_codes(body) == ["NOT_FOUND"]


async def test_upload_urls_are_signed_for_the_public_endpoint(
    env: dict[str, str], tenant: Tenant, database: None
) -> None:
    from mediagate.config import load_settings

    public = load_settings({**env, "S3_PUBLIC_ENDPOINT": "https://media.example.com"})

    class NoJobs:
        async def publish(self, job: object) -> None:
            raise AssertionError

    service = UploadService(public, ObjectStore(public), NoJobs())
    ticket = await service.request_upload(
        tenant.principal, tenant.session_id, "a.jpg", "image/jpeg", None, "test"
    )
    url = urlsplit(ticket.upload_url)
    assert (url.scheme, url.netloc) == ("https", "media.example.com")
    assert "X-Amz-Expires=300" in url.query and "X-Amz-Signature=" in url.query


async def test_the_apis_commits_are_durable(api: httpx.AsyncClient) -> None:
    """A URL handed to a client must survive a database crash: no asynchronous commit."""
    from mediagate.db.tables import SessionMedia

    rows = await SessionMedia.raw("SHOW synchronous_commit")
    assert rows == [{"synchronous_commit": "on"}]
