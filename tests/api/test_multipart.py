"""Multipart uploads through the API against a real S3 server: start, parts, resume,
complete, abort, and what each refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from mediagate.config import Settings
from mediagate.db import media_rows as repo
from mediagate.domain.status import MediaStatus
from mediagate.storage.multipart import MultipartUploads
from mediagate.storage.object_store import ObjectStore
from tests.support import media
from tests.support.api import Tenant, error_codes
from tests.support.flow import drain_jobs
from tests.support.multipart import (
    ABORT,
    COMPLETE,
    PART_URLS,
    UPLOADED_PARTS,
    call,
    completed,
    put_part,
    race_complete_and_abort,
    read_part,
    start,
)

MIB = 1024 * 1024


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A valid 40 MiB MP4: three parts of 16 MiB (the last one 8)."""
    return media.padded_video(tmp_path / "car.mp4", 40 * MIB)


async def _started(api: httpx.AsyncClient, tenant: Tenant, source: Path) -> dict[str, Any]:
    body = await start(api, tenant, source.stat().st_size)  # noqa: ASYNC240 - a stat
    assert "errors" not in body, body
    ticket: dict[str, Any] = body["data"]["startMultipartUpload"]
    return ticket


async def _send(ticket: dict[str, Any], source: Path, numbers: list[int]) -> dict[int, str]:
    urls = {part["partNumber"]: part["url"] for part in ticket["parts"]}
    return {
        number: await put_part(urls[number], read_part(source, number, ticket["partSize"]))
        for number in numbers
    }


async def test_a_started_upload_has_a_pending_row_and_signed_part_urls(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant, clip: Path
) -> None:
    ticket = await _started(api, tenant, clip)
    assert ticket["partSize"] == settings.uploads.multipart_part_size == 16 * MIB
    assert ticket["partCount"] == 3 and [p["partNumber"] for p in ticket["parts"]] == [1, 2, 3]
    assert all(
        ticket["uploadId"] in p["url"] and "X-Amz-Signature" in p["url"] for p in ticket["parts"]
    )
    record = await repo.find_by_key(ticket["fileKey"])
    assert record is not None and record.status is MediaStatus.PENDING_UPLOAD
    assert (record.upload_id, record.declared_size) == (ticket["uploadId"], 40 * MIB)


async def test_parts_complete_into_the_declared_object_and_queue_it(
    api: httpx.AsyncClient, settings: Settings, store: ObjectStore, tenant: Tenant, clip: Path
) -> None:
    ticket = await _started(api, tenant, clip)
    etags = await _send(ticket, clip, [3, 1, 2])  # any order
    body = await call(api, tenant, COMPLETE, ticket, parts=completed(etags), alt="the car")
    assert body["data"]["completeMultipartUpload"]["status"] == "UPLOADED", body
    stored = await store.head(ticket["fileKey"])
    assert stored is not None and stored.size == 40 * MIB and stored.content_type == "video/mp4"
    (job,) = await drain_jobs(settings)
    assert job["fileKey"] == ticket["fileKey"]
    again = await call(api, tenant, COMPLETE, ticket, parts=completed(etags), alt="the car")
    assert again["data"]["completeMultipartUpload"] == body["data"]["completeMultipartUpload"]
    assert await drain_jobs(settings) == [], "completing twice queues once"


async def test_a_new_client_resumes_from_the_parts_the_store_holds(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant, clip: Path
) -> None:
    ticket = await _started(api, tenant, clip)
    await _send(ticket, clip, [1, 3])
    # The page was reloaded: only fileKey and uploadId survived (in localStorage).
    resumed = {"fileKey": ticket["fileKey"], "uploadId": ticket["uploadId"]}
    listed = await call(api, tenant, UPLOADED_PARTS, resumed)
    held = {part["partNumber"]: part for part in listed["data"]["uploadedParts"]}
    assert sorted(held) == [1, 3] and held[1]["size"] == 16 * MIB and held[3]["size"] == 8 * MIB
    missing = [n for n in range(1, ticket["partCount"] + 1) if n not in held]
    fresh = await call(api, tenant, PART_URLS, resumed, partNumbers=missing)
    (url,) = [part["url"] for part in fresh["data"]["uploadPartUrls"]]
    etags = {number: part["etag"] for number, part in held.items()}
    etags[2] = await put_part(url, read_part(clip, 2, ticket["partSize"]))
    body = await call(api, tenant, COMPLETE, resumed, parts=completed(etags))
    assert body["data"]["completeMultipartUpload"]["status"] == "UPLOADED", body
    await drain_jobs(settings)


async def test_fresh_part_urls_keep_the_upload_open(
    api: httpx.AsyncClient, tenant: Tenant, clip: Path
) -> None:
    ticket = await _started(api, tenant, clip)
    before = await repo.find_by_key(ticket["fileKey"])
    body = await call(api, tenant, PART_URLS, ticket, partNumbers=[2, 2, 1])
    assert [p["partNumber"] for p in body["data"]["uploadPartUrls"]] == [1, 2]
    after = await repo.find_by_key(ticket["fileKey"])
    assert before is not None and after is not None
    assert after.upload_expires_at > before.upload_expires_at
    for numbers in ([0], [4], [], list(range(1, 300))):
        refused = await call(api, tenant, PART_URLS, ticket, partNumbers=numbers)
        assert error_codes(refused) == ["BAD_USER_INPUT"], (numbers, refused)


async def test_abort_drops_the_parts_and_closes_the_row(
    api: httpx.AsyncClient, store: ObjectStore, tenant: Tenant, clip: Path
) -> None:
    ticket = await _started(api, tenant, clip)
    await _send(ticket, clip, [1])
    body = await call(api, tenant, ABORT, ticket)
    aborted = body["data"]["abortMultipartUpload"]
    assert (
        aborted["status"] == "REJECTED" and aborted["rejectionReason"] == "the upload was aborted"
    )
    assert await store.head(ticket["fileKey"]) is None
    open_keys = [u.key for u in await MultipartUploads(store).open_uploads("sessions/", 10_000)]
    assert ticket["fileKey"] not in open_keys
    assert (await call(api, tenant, ABORT, ticket))["data"] == body["data"], "idempotent"
    for document, extra in (
        (UPLOADED_PARTS, {}),
        (PART_URLS, {"partNumbers": [1]}),
    ):
        assert error_codes(await call(api, tenant, document, ticket, **extra)) == ["CONFLICT"]
    completing = await call(api, tenant, COMPLETE, ticket, parts=[{"partNumber": 1, "etag": "x"}])
    assert error_codes(completing) == ["CONFLICT"]
    assert "aborted" in completing["errors"][0]["message"]


async def test_complete_and_abort_at_once_one_wins_cleanly(
    api: httpx.AsyncClient, settings: Settings, store: ObjectStore, tenant: Tenant
) -> None:
    winners = await race_complete_and_abort(api, tenant, store, rounds=16)
    assert len(winners) == 16
    await drain_jobs(settings)  # the completed ones were queued


@pytest.mark.parametrize("fault", ["missing part", "wrong etag", "total differs", "out of order"])
async def test_bad_parts_are_refused_and_change_nothing(
    api: httpx.AsyncClient,
    settings: Settings,
    store: ObjectStore,
    tenant: Tenant,
    clip: Path,
    fault: str,
) -> None:
    ticket = await _started(api, tenant, clip)
    urls = {part["partNumber"]: part["url"] for part in ticket["parts"]}
    etags = await _send(ticket, clip, [1, 2])
    last = read_part(clip, 3, ticket["partSize"])
    if fault == "total differs":
        last += b"\0" * 1000  # the client sends more than it declared
    if fault != "missing part":
        etags[3] = await put_part(urls[3], last)
    parts = completed(etags)
    if fault == "missing part":
        parts.append({"partNumber": 3, "etag": etags[1]})
    if fault == "wrong etag":
        parts[1]["etag"] = parts[0]["etag"]
    if fault == "out of order":
        parts.reverse()
    before = await repo.find_by_key(ticket["fileKey"])

    body = await call(api, tenant, COMPLETE, ticket, parts=parts)

    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "parts"
    assert await repo.find_by_key(ticket["fileKey"]) == before, "the row is unchanged"
    assert await store.head(ticket["fileKey"]) is None, "nothing was stored"
    assert await drain_jobs(settings) == []
    listed = await call(api, tenant, UPLOADED_PARTS, ticket)
    assert len(listed["data"]["uploadedParts"]) == (2 if fault == "missing part" else 3)


@pytest.mark.parametrize(
    ("content_type", "filename", "limit"),
    [("video/mp4", "car.mp4", "max_video_bytes"), ("image/jpeg", "car.jpg", "max_image_bytes")],
)
async def test_a_declared_size_over_the_limit_is_refused_before_anything_is_issued(
    api: httpx.AsyncClient,
    settings: Settings,
    store: ObjectStore,
    tenant: Tenant,
    content_type: str,
    filename: str,
    limit: str,
) -> None:
    before = await MultipartUploads(store).open_uploads(f"sessions/{tenant.session_id}/", 100)
    body = await start(api, tenant, getattr(settings.uploads, limit) + 1, filename, content_type)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "size"
    assert await repo.list_session_media(tenant.session_id, None) == []
    after = await MultipartUploads(store).open_uploads(f"sessions/{tenant.session_id}/", 100)
    assert before == after == []


@pytest.mark.parametrize(
    ("size", "accepted"),
    [
        ("2147483648", True),  # 2 GiB: past 32-bit Int, and a string is safe in JavaScript
        (3_000_000_000 * 4, False),  # a 64-bit number, over the video limit
        ("9223372036854775808", False),  # past 64 bits
        (5.5, False),
        ("12abc", False),
        (True, False),
    ],
)
async def test_sizes_are_64_bit_integers(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant, size: Any, accepted: bool
) -> None:
    body = await start(api, tenant, size)
    if accepted:
        assert body["data"]["startMultipartUpload"]["partCount"] == 128, body
        await call(api, tenant, ABORT, body["data"]["startMultipartUpload"])
    else:
        assert error_codes(body) == ["BAD_USER_INPUT"], body


async def test_another_organization_can_do_nothing_with_an_upload(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, clip: Path
) -> None:
    ticket = await _started(api, tenant, clip)
    etags = await _send(ticket, clip, [1, 2, 3])
    # The other organization knows the ids, and names the session or its own.
    for intruder in (
        Tenant(other_tenant.principal, tenant.session_id, other_tenant.token),
        other_tenant,
    ):
        attempts: list[tuple[str, dict[str, Any]]] = [
            (UPLOADED_PARTS, {}),
            (PART_URLS, {"partNumbers": [1]}),
            (COMPLETE, {"parts": completed(etags)}),
            (ABORT, {}),
        ]
        for document, extra in attempts:
            body = await call(api, intruder, document, ticket, **extra)
            expected = "FORBIDDEN" if intruder.session_id == tenant.session_id else "NOT_FOUND"
            assert error_codes(body) == [expected], body
            assert "uploadedParts" not in str(body.get("data"))
    record = await repo.find_by_key(ticket["fileKey"])
    assert record is not None and record.status is MediaStatus.PENDING_UPLOAD
    assert len((await call(api, tenant, UPLOADED_PARTS, ticket))["data"]["uploadedParts"]) == 3


async def test_a_wrong_upload_id_is_not_found(
    api: httpx.AsyncClient, tenant: Tenant, clip: Path
) -> None:
    ticket = await _started(api, tenant, clip)
    wrong = {**ticket, "uploadId": "not-" + ticket["uploadId"]}
    assert error_codes(await call(api, tenant, UPLOADED_PARTS, wrong)) == ["NOT_FOUND"]
