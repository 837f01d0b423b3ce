"""Authentication and tenant isolation: nothing of another organization leaks."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import jwt
import pytest

from mediagate.config import Settings
from mediagate.db import media_rows as repo
from mediagate.db import session_rows
from mediagate.domain.status import MediaStatus
from tests.support.api import Tenant, error_codes, graphql
from tests.support.flow import (
    GET_UPLOAD_URL,
    MEDIA,
    SESSION_MEDIA,
    confirm,
    put_object,
    request_upload,
    upload,
)

JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"\x01" * 500


def _variables(tenant: Tenant) -> dict[str, str]:
    return {"sessionId": str(tenant.session_id), "filename": "a.jpg", "contentType": "image/jpeg"}


def _token(settings: Settings, tenant: Tenant, **claims: object) -> str:
    base: dict[str, object] = {
        "sub": str(tenant.principal.user_id),
        "org_id": str(tenant.principal.organization_id),
        "exp": int(time.time()) + 60,
    }
    base.update(claims)
    payload = {k: v for k, v in base.items() if v is not None}
    assert settings.auth.jwt_secret is not None
    return jwt.encode(payload, settings.auth.jwt_secret, algorithm="HS256")


async def test_no_token_is_unauthenticated(api: httpx.AsyncClient, tenant: Tenant) -> None:
    body = await graphql(api, GET_UPLOAD_URL, _variables(tenant), None)
    assert error_codes(body) == ["UNAUTHENTICATED"] and body["data"] is None


@pytest.mark.parametrize(
    "case",
    ["garbage", "expired", "no_exp", "wrong_secret", "alg_none", "hs512", "no_org", "bad_sub"],
)
async def test_bad_tokens_are_unauthenticated(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant, case: str
) -> None:
    tokens = {
        "garbage": "not.a.jwt",
        "expired": _token(settings, tenant, exp=int(time.time()) - 10),
        "no_exp": _token(settings, tenant, exp=None),
        "wrong_secret": jwt.encode(
            {"sub": "x", "exp": time.time() + 60}, "k" * 32, algorithm="HS256"
        ),
        "alg_none": jwt.encode(
            {
                "sub": str(tenant.principal.user_id),
                "org_id": str(tenant.principal.organization_id),
                "exp": int(time.time()) + 60,
            },
            None,  # type: ignore[arg-type]
            algorithm="none",
        ),
        "hs512": jwt.encode(
            {
                "sub": str(tenant.principal.user_id),
                "org_id": str(tenant.principal.organization_id),
                "exp": int(time.time()) + 60,
            },
            settings.auth.jwt_secret or "",
            algorithm="HS512",
        ),
        "no_org": _token(settings, tenant, org_id=None),
        "bad_sub": _token(settings, tenant, sub="admin"),
    }
    body = await graphql(api, GET_UPLOAD_URL, _variables(tenant), tokens[case])
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_wrong_authorization_scheme_is_unauthenticated(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await api.post(
        "/graphql",
        json={"query": GET_UPLOAD_URL, "variables": _variables(tenant)},
        headers={"Authorization": f"Basic {tenant.token}"},
    )
    assert error_codes(response.json()) == ["UNAUTHENTICATED"]


async def test_cannot_get_an_upload_url_for_another_organizations_session(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    variables = {**_variables(tenant), "sessionId": str(other_tenant.session_id)}
    body = await graphql(api, GET_UPLOAD_URL, variables, tenant.token)
    assert error_codes(body) == ["FORBIDDEN"]
    assert await repo.list_session_media(other_tenant.session_id, None) == []


async def test_unknown_session_is_not_found(api: httpx.AsyncClient, tenant: Tenant) -> None:
    variables = {**_variables(tenant), "sessionId": str(uuid.uuid4())}
    assert error_codes(await graphql(api, GET_UPLOAD_URL, variables, tenant.token)) == ["NOT_FOUND"]


async def test_cannot_confirm_another_organizations_media(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    ticket = await request_upload(api, other_tenant)
    await put_object(ticket["uploadUrl"], JPEG_BYTES, "image/jpeg")
    # Their key with our session, and their key with their session: neither is ours.
    ours = await confirm(api, tenant, ticket["fileKey"])
    assert error_codes(ours) == ["NOT_FOUND"]
    spoofed = Tenant(tenant.principal, other_tenant.session_id, tenant.token)
    theirs = await confirm(api, spoofed, ticket["fileKey"])
    assert error_codes(theirs) == ["FORBIDDEN"]
    row = await repo.find_by_key(ticket["fileKey"])
    assert row is not None and row.status is MediaStatus.PENDING_UPLOAD
    for body in (ours, theirs):
        text = json.dumps(body)
        assert str(row.id) not in text and ticket["fileKey"] not in text
        assert str(other_tenant.session_id) not in json.dumps(body.get("data"))


async def test_a_key_of_another_session_of_the_same_organization_is_not_found(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    second_session = await session_rows.create_session(tenant.principal.organization_id)
    sibling = Tenant(tenant.principal, second_session, tenant.token)
    ticket = await request_upload(api, sibling)
    await put_object(ticket["uploadUrl"], JPEG_BYTES, "image/jpeg")
    assert error_codes(await confirm(api, tenant, ticket["fileKey"])) == ["NOT_FOUND"]


async def test_cannot_read_another_organizations_media(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await upload(api, other_tenant, JPEG_BYTES)
    body = await graphql(api, MEDIA, {"id": theirs["id"]}, tenant.token)
    assert error_codes(body) == ["NOT_FOUND"]
    assert body["data"] == {"media": None}
    listing = await graphql(
        api, SESSION_MEDIA, {"sessionId": str(other_tenant.session_id)}, tenant.token
    )
    assert error_codes(listing) == ["FORBIDDEN"] and listing["data"] is None
    assert theirs["fileKey"] not in json.dumps(body) + json.dumps(listing)
