"""Every tenant bounded before anything exists: the declared size (signed into the URL),
a user's outstanding uploads, an organization's storage quota. Each refusal is typed,
names its limit and leaves no row, no object and no usage."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mediagate.auth.tokens import issue_token
from mediagate.config import Settings
from mediagate.db import session_rows
from mediagate.db.engine import pool
from mediagate.domain.principal import Principal
from mediagate.storage.object_store import ObjectStore
from tests.support.api import Tenant, error_codes, graphql, new_tenant, service_token
from tests.support.daemons import ServedApi, serve_api
from tests.support.flow import put_object
from tests.support.multipart import start
from tests.support.readback import row

SIZED_URL = """
mutation Url($sessionId: UUID!, $size: Long, $type: String = "image/jpeg") {
  getUploadUrl(sessionId: $sessionId, filename: "p.jpg", contentType: $type, size: $size) {
    uploadUrl fileKey expiresIn
  }
}
"""
CONFIRM = """
mutation C($sessionId: UUID!, $fileKey: String!) {
  confirmUpload(sessionId: $sessionId, fileKey: $fileKey) { id status rejectionReason }
}
"""
USAGE = "query { organizationUsage { usedBytes quotaBytes quotaIsOwn } }"
SET_QUOTA = """
mutation Q($bytes: Long, $useDefault: Boolean) {
  setOrganizationQuota(bytes: $bytes, useDefault: $useDefault) { usedBytes quotaBytes quotaIsOwn }
}
"""
DELETE = "mutation D($id: UUID!) { deleteMedia(id: $id) { status } }"


async def _ask(
    api: httpx.AsyncClient, tenant: Tenant, size: int | str | None, token: str | None = None
) -> dict[str, Any]:
    variables = {"sessionId": str(tenant.session_id), "size": size}
    return await graphql(api, SIZED_URL, variables, token or tenant.token)


async def _items(tenant: Tenant) -> int:
    count = await pool().fetchval(
        "SELECT count(*) FROM session_media WHERE session_id = $1", tenant.session_id
    )
    return int(count)


async def test_a_declared_size_is_signed_kept_and_required_of_the_file(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await _ask(api, tenant, 1234)
    ticket = body["data"]["getUploadUrl"]
    query = parse_qs(urlsplit(ticket["uploadUrl"]).query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;host"]
    assert (await row(ticket["fileKey"])).declared_size == 1234
    # The S3 test server does not check signatures: our own check at confirmation does.
    await put_object(ticket["uploadUrl"], b"\xff\xd8\xff" + b"x" * 1000, "image/jpeg")
    confirmed = await graphql(
        api, CONFIRM, {"sessionId": str(tenant.session_id), "fileKey": ticket["fileKey"]},
        tenant.token,
    )  # fmt: skip
    media = confirmed["data"]["confirmUpload"]
    assert media["status"] == "REJECTED"
    assert "not the 1234 declared" in media["rejectionReason"]


async def test_sizes_past_the_limit_are_refused_before_a_url(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    limit = settings.uploads.max_image_bytes
    assert "errors" not in await _ask(api, tenant, limit), "the limit itself is allowed"
    before = await _items(tenant)
    for size in (limit + 1, 10 * limit, str(2**63 - 1), "99999999999999999999999", 0, -1):
        body = await _ask(api, tenant, size)
        assert error_codes(body) == ["BAD_USER_INPUT"], (size, body)
    assert await _items(tenant) == before, "no refusal left a row"


async def test_the_101st_outstanding_url_of_a_user_is_rate_limited(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    most = settings.uploads.max_pending_per_user
    # Concurrent requests are counted exactly: of most + 20 at once, `most` get a URL.
    answers = await asyncio.gather(*(_ask(api, tenant, 100) for _ in range(most + 20)))
    issued = [a for a in answers if "errors" not in a]
    limited = [a for a in answers if error_codes(a) == ["RATE_LIMITED"]]
    assert len(issued) == most and len(limited) == 20, [a.get("errors") for a in answers][:3]
    error = limited[0]["errors"][0]
    assert error["extensions"]["limit"] == "MAX_PENDING_UPLOADS_PER_USER"
    ttl = settings.uploads.upload_url_ttl
    assert 1 <= error["extensions"]["retryAfter"] <= ttl + 5
    assert await _items(tenant) == most, "the refused ones left no row"
    started = await start(api, tenant, str(20 * 1024 * 1024))
    assert error_codes(started) == ["RATE_LIMITED"], "multipart starts count too"

    # Another user of the organization is served meanwhile.
    colleague = Principal(uuid.uuid4(), tenant.principal.organization_id)
    assert "errors" not in await _ask(api, tenant, 100, issue_token(settings, colleague, 600))

    # One of the user's URLs expires (late-upload allowance past too): room for one more.
    oldest = issued[0]["data"]["getUploadUrl"]["fileKey"]
    await pool().execute(
        "UPDATE session_media SET upload_expires_at = now() - interval '6 seconds'"
        " WHERE file_key = $1",
        oldest,
    )
    assert "errors" not in await _ask(api, tenant, 100)
    assert error_codes(await _ask(api, tenant, 100)) == ["RATE_LIMITED"]
    # One is confirmed (its file came): room again.
    second = issued[1]["data"]["getUploadUrl"]
    await put_object(second["uploadUrl"], b"\xff\xd8\xff" + b"x" * 97, "image/jpeg")
    await graphql(
        api, CONFIRM, {"sessionId": str(tenant.session_id), "fileKey": second["fileKey"]},
        tenant.token,
    )  # fmt: skip
    assert "errors" not in await _ask(api, tenant, 100)


QUOTA = 1_000_000


@pytest.fixture(scope="module")
def bounded(env: dict[str, str], api: httpx.AsyncClient) -> Iterator[ServedApi]:
    """`mediagate serve` (one process: one refusal counter) with sizes required and a quota."""
    bounded_env = {
        **env,
        "UPLOAD_REQUIRE_SIZE": "true",
        "ORG_STORAGE_QUOTA_BYTES": str(QUOTA),
        "MAX_PENDING_UPLOADS_PER_USER": "1000",
    }
    with serve_api(bounded_env, "--workers", "1") as served:
        yield served


@pytest.fixture
async def bounded_api(bounded: ServedApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bounded.url, timeout=30) as client:
        yield client


async def _usage(api: httpx.AsyncClient, settings: Settings, tenant: Tenant) -> dict[str, Any]:
    body = await graphql(api, USAGE, {}, service_token(settings, tenant))
    usage: dict[str, Any] = body["data"]["organizationUsage"]
    return usage


async def test_sizes_can_be_required(
    bounded_api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    policy = await graphql(bounded_api, "query { uploadPolicy { sizeRequired } }", {}, None)
    assert policy["data"]["uploadPolicy"]["sizeRequired"] is True
    body = await _ask(bounded_api, tenant, None)
    assert (
        error_codes(body) == ["BAD_USER_INPUT"]
        and body["errors"][0]["extensions"]["field"] == "size"
    )
    assert await _items(tenant) == 0


async def test_the_quota_refuses_the_byte_that_would_pass_it(
    bounded_api: httpx.AsyncClient, settings: Settings, tenant: Tenant, store: ObjectStore
) -> None:
    first = (await _ask(bounded_api, tenant, 600_000))["data"]["getUploadUrl"]
    over = await _ask(bounded_api, tenant, 400_001)
    assert error_codes(over) == ["QUOTA_EXCEEDED"], over
    assert over["errors"][0]["extensions"]["limit"] == "ORG_STORAGE_QUOTA_BYTES"
    assert (await _usage(bounded_api, settings, tenant))["usedBytes"] == 600_000, "none left"
    assert "errors" not in await _ask(bounded_api, tenant, 400_000), "up to the quota itself"
    assert error_codes(await _ask(bounded_api, tenant, 1)) == ["QUOTA_EXCEEDED"]
    assert error_codes(await _ask(bounded_api, tenant, 10**9, None)) == ["BAD_USER_INPUT"]
    usage = await _usage(bounded_api, settings, tenant)
    assert usage == {"usedBytes": QUOTA, "quotaBytes": QUOTA, "quotaIsOwn": False}
    assert await _items(tenant) == 2

    # Deleting frees its share at once.
    media_id = str((await row(first["fileKey"])).id)
    deleted = await graphql(bounded_api, DELETE, {"id": media_id}, tenant.token)
    assert deleted["data"]["deleteMedia"]["status"] == "DELETED"
    assert (await _usage(bounded_api, settings, tenant))["usedBytes"] == 400_000
    # Two at once that each fit, but not together: exactly one.
    both = await asyncio.gather(*(_ask(bounded_api, tenant, 350_000) for _ in range(2)))
    assert sorted(error_codes(b) for b in both) == [[], ["QUOTA_EXCEEDED"]], both
    assert (await _usage(bounded_api, settings, tenant))["usedBytes"] == 750_000

    metrics = (await bounded_api.get("/metrics")).text
    refused = [
        line for line in metrics.splitlines() if line.startswith("mediagate_upload_refusals")
    ]
    counts = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in refused}
    assert counts["ORG_STORAGE_QUOTA_BYTES"] >= 3 and counts["MAX_IMAGE_BYTES"] >= 1, refused


async def test_a_quota_of_its_own_and_the_cli(
    bounded_api: httpx.AsyncClient, settings: Settings, env: dict[str, str], database: None
) -> None:
    tenant = await new_tenant(settings)
    backend = service_token(settings, tenant)
    user = await graphql(bounded_api, USAGE, {}, tenant.token)
    assert error_codes(user) == ["FORBIDDEN"]
    own = await graphql(bounded_api, SET_QUOTA, {"bytes": "10"}, backend)
    assert own["data"]["setOrganizationQuota"] == {
        "usedBytes": 0, "quotaBytes": 10, "quotaIsOwn": True,
    }  # fmt: skip
    assert error_codes(await _ask(bounded_api, tenant, 11)) == ["QUOTA_EXCEEDED"]
    unlimited = await graphql(bounded_api, SET_QUOTA, {"bytes": None}, backend)
    assert unlimited["data"]["setOrganizationQuota"]["quotaBytes"] is None
    assert "errors" not in await _ask(bounded_api, tenant, 5_000_000)

    from tests.api.test_cli_and_http import run_cli

    org = str(tenant.principal.organization_id)
    shown = run_cli(env, "org", "quota", "--org", org, "--bytes", "7000000")
    assert json.loads(shown.stdout) == {
        "organization_id": org, "used_bytes": 5_000_000, "quota_bytes": 7_000_000,
        "quota_is_own": True,
    }  # fmt: skip
    assert error_codes(await _ask(bounded_api, tenant, 2_000_001)) == ["QUOTA_EXCEEDED"]
    back = run_cli(env, "org", "quota", "--org", org, "--default")
    assert json.loads(back.stdout)["quota_bytes"] is None, "this server's env has no default"
    usage = json.loads(run_cli(env, "org", "usage", "--org", org).stdout)
    assert usage["used_bytes"] == 5_000_000 and usage["quota_is_own"] is False
    refused = run_cli(env, "org", "quota", "--org", org, "--bytes", "-1")
    assert refused.returncode == 2


@pytest.fixture(scope="module")
def small_files(env: dict[str, str], api: httpx.AsyncClient) -> Iterator[ServedApi]:
    """Files of at most 100 kB against a 1 MB quota: a reservation that fits the share of
    the quota a free shard holds passes without waiting; the others take every shard and
    check the sum, one at a time."""
    small_env = {
        **env,
        "MAX_IMAGE_BYTES": "100000",
        "MAX_VIDEO_BYTES": "100000",
        "ORG_STORAGE_QUOTA_BYTES": str(QUOTA),
    }
    with serve_api(small_env, "--workers", "1") as served:
        yield served


# 50 kB never fits a shard's share of 1 MB (1/64 of it): each is checked against the sum.
# 9 kB fits one share once, so the shards' shares and the sum are both at work, at once.
@pytest.mark.parametrize(("requests", "size"), [(30, 50_000), (150, 9_000)])
async def test_concurrent_reservations_never_pass_the_quota_together(
    small_files: ServedApi, settings: Settings, tenant: Tenant, requests: int, size: int
) -> None:
    # Each by a user of its own into a session of its own: one user's requests, or one
    # session's, queue on their own locks anyway.
    organization = tenant.principal.organization_id
    others = []
    for _ in range(requests):
        user = Principal(uuid.uuid4(), organization)
        session = await session_rows.create_session(organization)
        others.append(Tenant(user, session, issue_token(settings, user, 600)))
    async with httpx.AsyncClient(base_url=small_files.url, timeout=60) as client:
        answers = await asyncio.gather(*(_ask(client, other, size) for other in others))
        assert sum("errors" not in a for a in answers) == QUOTA // size
        assert {tuple(error_codes(a)) for a in answers} == {(), ("QUOTA_EXCEEDED",)}
        used = (await _usage(client, settings, tenant))["usedBytes"]
        assert used == QUOTA // size * size
    assert sum([await _items(other) for other in others]) == QUOTA // size
