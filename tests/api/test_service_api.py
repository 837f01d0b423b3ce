"""The product's backend: sessions it creates, names, closes and lists; service tokens only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from mediagate.config import Settings
from mediagate.domain.session_fields import MAX_EXTERNAL_ID_CHARS, MAX_METADATA_BYTES
from tests.support.api import Tenant, error_codes, graphql, service_token
from tests.support.multipart import START as START_MULTIPART

SESSION_FIELDS = "id externalId metadata createdAt closedAt mediaCounts { status count }"
CREATE = f"""
mutation Create($externalId: String, $metadata: JSON) {{
  createSession(externalId: $externalId, metadata: $metadata) {{ {SESSION_FIELDS} }}
}}
"""
CLOSE = f"mutation Close($id: UUID!) {{ closeSession(id: $id) {{ {SESSION_FIELDS} }} }}"
READ = f"query Read($id: UUID!) {{ uploadSession(id: $id) {{ {SESSION_FIELDS} }} }}"
LIST = f"""
query List($externalId: String, $first: Int, $after: String) {{
  uploadSessions(externalId: $externalId, first: $first, after: $after) {{
    edges {{ cursor node {{ {SESSION_FIELDS} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""
GET_URL = """
mutation Url($sessionId: UUID!) {
  getUploadUrl(sessionId: $sessionId, filename: "a.jpg", contentType: "image/jpeg") { fileKey }
}
"""


async def _create(
    api: httpx.AsyncClient, token: str, external_id: str | None = None, metadata: Any = None
) -> dict[str, Any]:
    body = await graphql(api, CREATE, {"externalId": external_id, "metadata": metadata}, token)
    assert "errors" not in body, body
    created: dict[str, Any] = body["data"]["createSession"]
    return created


async def test_a_service_token_creates_reads_and_closes_a_session(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    backend = service_token(settings, tenant)
    metadata = {"visit": 42, "plate": "AB-123", "nested": {"list": [1, "two", None]}}
    created = await _create(api, backend, "visit-42", metadata)
    assert created["externalId"] == "visit-42"
    assert created["metadata"] == metadata
    assert created["closedAt"] is None
    counts = {row["status"]: row["count"] for row in created["mediaCounts"]}
    assert set(counts) >= {"PENDING_UPLOAD", "COMPLETED", "REJECTED"}
    assert not any(counts.values())

    # A user of the organization uploads into it; the backend sees the item counted.
    body = await graphql(api, GET_URL, {"sessionId": created["id"]}, tenant.token)
    assert "errors" not in body, body
    read = (await graphql(api, READ, {"id": created["id"]}, backend))["data"]["uploadSession"]
    assert {r["status"]: r["count"] for r in read["mediaCounts"]}["PENDING_UPLOAD"] == 1

    closed = (await graphql(api, CLOSE, {"id": created["id"]}, backend))["data"]["closeSession"]
    assert closed["closedAt"] is not None
    again = (await graphql(api, CLOSE, {"id": created["id"]}, backend))["data"]["closeSession"]
    assert again["closedAt"] == closed["closedAt"], "closing twice keeps the first time"


async def test_a_closed_session_refuses_new_urls_and_multipart_starts(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    backend = service_token(settings, tenant)
    session = await _create(api, backend)
    ticket = await graphql(api, GET_URL, {"sessionId": session["id"]}, tenant.token)
    assert "errors" not in ticket, ticket
    await graphql(api, CLOSE, {"id": session["id"]}, backend)

    refused = await graphql(api, GET_URL, {"sessionId": session["id"]}, tenant.token)
    assert error_codes(refused) == ["CONFLICT"], refused
    multipart = await graphql(
        api,
        START_MULTIPART,
        {
            "sessionId": session["id"],
            "filename": "v.mp4",
            "contentType": "video/mp4",
            "size": 20 * 1024 * 1024,
        },
        tenant.token,
    )
    assert error_codes(multipart) == ["CONFLICT"], multipart
    read = (await graphql(api, READ, {"id": session["id"]}, backend))["data"]["uploadSession"]
    assert {r["status"]: r["count"] for r in read["mediaCounts"]}["PENDING_UPLOAD"] == 1, (
        "the refusals left no row"
    )


async def test_close_and_get_url_racing_leave_no_item_after_the_close(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    backend = service_token(settings, tenant)
    session = await _create(api, backend)
    requests = [
        graphql(api, GET_URL, {"sessionId": session["id"]}, tenant.token) for _ in range(20)
    ]
    results = await asyncio.gather(
        *requests[:10], graphql(api, CLOSE, {"id": session["id"]}, backend), *requests[10:]
    )
    issued = [r for r in results if "errors" not in r and "getUploadUrl" in r.get("data", {})]
    refused = [r for r in results if error_codes(r) == ["CONFLICT"]]
    assert len(issued) + len(refused) == 20, results
    read = (await graphql(api, READ, {"id": session["id"]}, backend))["data"]["uploadSession"]
    pending = {r["status"]: r["count"] for r in read["mediaCounts"]}["PENDING_UPLOAD"]
    assert pending == len(issued), "every URL issued has its row, and no refused one has"


async def test_the_same_external_id_answers_the_same_session(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    backend = service_token(settings, tenant)
    answers = await asyncio.gather(*(_create(api, backend, "visit-7", {"n": n}) for n in range(8)))
    assert len({answer["id"] for answer in answers}) == 1, "concurrent creates: one session"
    later = await _create(api, backend, "visit-7", {"other": True})
    assert later["id"] == answers[0]["id"]
    assert later["metadata"] == answers[0]["metadata"], "the first metadata is kept"
    # Another organization's key space is its own.
    theirs = await _create(api, service_token(settings, other_tenant), "visit-7")
    assert theirs["id"] != later["id"]
    # No externalId: a new session every time.
    first, second = await _create(api, backend), await _create(api, backend)
    assert first["id"] != second["id"]


async def test_user_tokens_get_forbidden(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    session = await _create(api, service_token(settings, tenant))
    for query, variables in (
        (CREATE, {"externalId": "x"}),
        (CLOSE, {"id": session["id"]}),
        (READ, {"id": session["id"]}),
        (LIST, {}),
    ):
        body = await graphql(api, query, variables, tenant.token)
        assert error_codes(body) == ["FORBIDDEN"], (query, body)
    assert error_codes(await graphql(api, LIST, {}, None)) == ["UNAUTHENTICATED"]


async def test_another_organization_sees_nothing(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await _create(api, service_token(settings, tenant), "private-visit")
    theirs = service_token(settings, other_tenant)
    for query in (READ, CLOSE):
        body = await graphql(api, query, {"id": mine["id"]}, theirs)
        assert error_codes(body) == ["FORBIDDEN"], body
        assert "private-visit" not in json.dumps(body)
    listed = await graphql(api, LIST, {"externalId": "private-visit"}, theirs)
    assert listed["data"]["uploadSessions"]["edges"] == []
    read = await graphql(api, READ, {"id": mine["id"]}, service_token(settings, tenant))
    assert read["data"]["uploadSession"]["closedAt"] is None, "its session is untouched"


async def test_sessions_page_by_cursor_and_by_external_id(
    api: httpx.AsyncClient, settings: Settings, other_tenant: Tenant
) -> None:
    backend = service_token(settings, other_tenant)
    made = [(await _create(api, backend, f"page-{n}"))["id"] for n in range(5)]
    seen: list[str] = []
    after = None
    while True:
        body = await graphql(api, LIST, {"first": 2, "after": after}, backend)
        page = body["data"]["uploadSessions"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert [s for s in seen if s in made] == made, "oldest first, each once"
    one = await graphql(api, LIST, {"externalId": "page-3"}, backend)
    assert [e["node"]["id"] for e in one["data"]["uploadSessions"]["edges"]] == [made[3]]
    for bad in ("nonsense", "c2Vzc2lvbjpub3QtYS1kYXRlfHg="):
        body = await graphql(api, LIST, {"after": bad}, backend)
        assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert error_codes(await graphql(api, LIST, {"first": 101}, backend)) == ["BAD_USER_INPUT"]


async def test_external_id_and_metadata_are_bounded_at_their_edges(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant
) -> None:
    backend = service_token(settings, tenant)
    at_edge = "k" * MAX_EXTERNAL_ID_CHARS
    assert (await _create(api, backend, at_edge))["externalId"] == at_edge
    # {"p":"…"} is 8 bytes of JSON around the string.
    largest = {"p": "x" * (MAX_METADATA_BYTES - 8)}
    assert (await _create(api, backend, None, largest))["metadata"] == largest
    before = await graphql(api, LIST, {"first": 100}, backend)
    for external_id, metadata in (
        (at_edge + "k", None),
        ("k" * 60_000, None),
        ("", None),
        ("tab\there", None),
        (None, {"p": "x" * (MAX_METADATA_BYTES - 7)}),
        (None, {"p": "x" * 60_000}),
        (None, [1, 2, 3]),
        (None, "a string"),
    ):
        body = await graphql(
            api, CREATE, {"externalId": external_id, "metadata": metadata}, backend
        )
        assert error_codes(body) == ["BAD_USER_INPUT"], (external_id, str(metadata)[:50], body)
        assert "Traceback" not in json.dumps(body)
    # Nesting past what a request may send (16 levels), within 4 KiB and far past it.
    for depth, code in ((1900, "BAD_REQUEST"), (30_000, "BAD_REQUEST")):
        deep = "[" * depth + "]" * depth
        raw = json.dumps({"query": CREATE, "variables": {"metadata": {"d": 0}}})
        response = await api.post(
            "/graphql",
            content=raw.replace('{"d": 0}', f'{{"d": {deep}}}'),
            headers={"Authorization": f"Bearer {backend}", "Content-Type": "application/json"},
        )
        assert error_codes(response.json()) == [code], (depth, response.text[:300])
    after = await graphql(api, LIST, {"first": 100}, backend)
    assert after == before, "no refusal left a session"
    nested: Any = []
    for _ in range(12):  # variables nest at most 16 levels
        nested = [nested]
    assert (await _create(api, backend, None, {"d": nested}))["metadata"] == {"d": nested}
