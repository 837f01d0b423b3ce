"""sessionMedia a page at a time, and sessions of at most MAX_SESSION_ITEMS items."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mediagate.config import Settings
from mediagate.db import media_rows as repo
from mediagate.db import session_rows
from mediagate.domain import keys
from mediagate.storage.multipart import MultipartUploads
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons
from tests.support.api import Tenant, error_codes, graphql, new_tenant
from tests.support.flow import GET_UPLOAD_URL
from tests.support.rows import unbounded

PAGE = """
query Page($sessionId: UUID!, $stage: String, $first: Int, $after: UUID) {
  sessionMedia(sessionId: $sessionId, stage: $stage, first: $first, after: $after) {
    id stage
  }
}
"""
SPEC_CALL = "query($s: UUID!) { sessionMedia(sessionId: $s) { id } }"
START = """
mutation Start($sessionId: UUID!) {
  startMultipartUpload(sessionId: $sessionId, filename: "v.mp4", contentType: "video/mp4",
                       size: 20000000) { uploadId }
}
"""
LIMIT = 5


async def _add_items(settings: Settings, tenant: Tenant, count: int) -> list[uuid.UUID]:
    """`count` items in the tenant's session, in creation order; every third in 'intake'."""
    await session_rows.ensure_user(tenant.principal.user_id, tenant.principal.organization_id)
    added = []
    for n in range(count):
        stage = "intake" if n % 3 == 0 else "inspection"
        media_id = await repo.insert_pending(
            organization_id=tenant.principal.organization_id,
            session_id=tenant.session_id,
            file_key=keys.upload_key(tenant.session_id, stage, ".jpg"),
            original_filename=f"{n}.jpg",
            content_type="image/jpeg",
            stage=stage,
            uploaded_by=tenant.principal.user_id,
            upload_expires_at=datetime.now(UTC) + timedelta(minutes=5),
            bounds=unbounded(settings.uploads.max_session_items),
        )
        assert media_id is not None
        added.append(media_id)
    return added


async def _page(api: httpx.AsyncClient, tenant: Tenant, **variables: Any) -> list[str]:
    body = await graphql(
        api, PAGE, {"sessionId": str(tenant.session_id), **variables}, tenant.token
    )
    assert "errors" not in body, body
    return [item["id"] for item in body["data"]["sessionMedia"]]


async def test_pages_walk_the_whole_session_once_in_order(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    added = [str(media_id) for media_id in await _add_items(settings, tenant, 230)]
    spec = await graphql(api, SPEC_CALL, {"s": str(tenant.session_id)}, tenant.token)
    assert [item["id"] for item in spec["data"]["sessionMedia"]] == added[:50]
    walked: list[str] = []
    while page := await _page(api, tenant, first=100, after=walked[-1] if walked else None):
        assert len(page) <= 100
        walked += page
    assert walked == added


async def test_a_stage_pages_on_its_own(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    added = await _add_items(settings, tenant, 30)
    intake = [str(media_id) for n, media_id in enumerate(added) if n % 3 == 0]
    first = await _page(api, tenant, stage="intake", first=4)
    rest = await _page(api, tenant, stage="intake", first=100, after=first[-1])
    assert first + rest == intake


@pytest.mark.parametrize("first", [0, -1, 101, 2**31 - 1, None], ids=str)
async def test_a_page_past_its_bounds_is_bad_user_input(
    api: httpx.AsyncClient, tenant: Tenant, first: int | None
) -> None:
    body = await graphql(
        api, PAGE, {"sessionId": str(tenant.session_id), "first": first}, tenant.token
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "first"


async def test_after_must_be_an_item_of_the_session(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    (theirs,) = await _add_items(settings, other_tenant, 1)
    for after in (theirs, uuid.uuid4()):
        body = await graphql(
            api, PAGE, {"sessionId": str(tenant.session_id), "after": str(after)}, tenant.token
        )
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["extensions"]["field"] == "after"


@pytest.fixture(scope="module")
def limited_url(env: dict[str, str], database: None, store: ObjectStore) -> Iterator[str]:
    limits = {"MAX_SESSION_ITEMS": str(LIMIT), "DB_POOL_SIZE": "8"}
    with daemons.serve_api({**env, **limits}, "--workers", "1") as served:
        yield served.url


@pytest.fixture
async def limited_api(limited_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limited_url) as client:
        yield client


async def _ask(api: httpx.AsyncClient, tenant: Tenant, n: int) -> dict[str, Any]:
    variables = {
        "sessionId": str(tenant.session_id),
        "filename": f"{n}.jpg",
        "contentType": "image/jpeg",
    }
    return await graphql(api, GET_UPLOAD_URL, variables, tenant.token)


async def test_a_session_takes_items_up_to_its_limit_and_no_more(
    limited_api: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await new_tenant(settings)
    for n in range(LIMIT):
        assert "errors" not in await _ask(limited_api, tenant, n)
    refused = await _ask(limited_api, tenant, LIMIT)
    assert error_codes(refused) == ["LIMIT_EXCEEDED"]
    assert refused["errors"][0]["extensions"]["limit"] == "MAX_SESSION_ITEMS"
    assert refused["data"] is None
    assert len(await repo.list_session_media(tenant.session_id, None)) == LIMIT


async def test_many_requests_at_once_for_the_last_places_get_exactly_the_limit(
    limited_api: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await new_tenant(settings)
    answers = await asyncio.gather(*(_ask(limited_api, tenant, n) for n in range(60)))
    assert sum("errors" not in answer for answer in answers) == LIMIT
    assert {code for answer in answers for code in error_codes(answer)} == {"LIMIT_EXCEEDED"}
    assert len(await repo.list_session_media(tenant.session_id, None)) == LIMIT
    assert await session_rows.session_item_count(tenant.session_id) == LIMIT


async def test_a_multipart_upload_past_the_limit_leaves_no_upload_in_the_store(
    limited_api: httpx.AsyncClient, settings: Settings, store: ObjectStore
) -> None:
    tenant = await new_tenant(settings)
    for n in range(LIMIT):
        assert "errors" not in await _ask(limited_api, tenant, n)
    refused = await graphql(limited_api, START, {"sessionId": str(tenant.session_id)}, tenant.token)
    assert error_codes(refused) == ["LIMIT_EXCEEDED"]
    prefix = f"{keys.UPLOADS_PREFIX}{tenant.session_id}/"
    assert await MultipartUploads(store).open_uploads(prefix, 10) == []
