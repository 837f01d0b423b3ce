"""Malformed arguments are the caller's mistake: BAD_USER_INPUT, never a 500 or an
ERROR traceback in our log, however far past a type's range they are."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import pytest

from tests.support.api import Tenant, error_codes

_AUDIT = """
query Audit($sessionId: UUID, $first: Int, $after: String) {
  auditEvents(sessionId: $sessionId, first: $first, after: $after) { pageInfo { endCursor } }
}
"""
_DIGITS = "1" + "0" * 4999  # past Python's own limit for converting digits to an int


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _start(size: str) -> str:
    return f"""mutation Start($sessionId: UUID!) {{
      startMultipartUpload(
        sessionId: $sessionId, filename: "big.mp4", contentType: "video/mp4", size: {size}
      ) {{ uploadId }}
    }}"""


_START_WITH_VARIABLE = """
mutation Start($sessionId: UUID!, $size: Long!) {
  startMultipartUpload(sessionId: $sessionId, filename: "big.mp4", contentType: "video/mp4",
                       size: $size) { uploadId }
}
"""


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (_AUDIT, {"after": _cursor("audit:" + "9" * 20)}),  # one past 64 bits' digits
        (_AUDIT, {"after": _cursor(f"audit:{2**63}")}),  # the first id past bigint
        (_AUDIT, {"after": _cursor("audit:" + _DIGITS)}),
        (_AUDIT, {"after": _cursor("audit:" + "0" * 4999 + "1")}),
        (_AUDIT, {"after": _cursor("audit:-1")}),
        (_AUDIT, {"first": None}),
        (_AUDIT.replace("first: $first", "first: null").replace("$first: Int, ", ""), {}),
        (_start(_DIGITS), {}),
        (_start(f'"{_DIGITS}"'), {}),
        (_start(str(2**63)), {}),
        (_START_WITH_VARIABLE, {"size": _DIGITS}),
    ],
    ids=[
        "cursor-of-20-digits",
        "cursor-past-bigint",
        "cursor-of-5000-digits",
        "cursor-of-5000-zeros",
        "negative-cursor",
        "first-null-variable",
        "first-null-literal",
        "size-literal-of-5000-digits",
        "size-string-of-5000-digits",
        "size-past-64-bits",
        "size-variable-of-5000-digits",
    ],
)
async def test_malformed_arguments_are_bad_user_input(
    api: httpx.AsyncClient,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
    query: str,
    variables: dict[str, Any],
) -> None:
    caplog.set_level(logging.WARNING)
    response = await api.post(
        "/graphql",
        json={"query": query, "variables": {"sessionId": str(tenant.session_id), **variables}},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code in (200, 400)
    assert error_codes(response.json()) == ["BAD_USER_INPUT"], response.json()
    assert "Traceback" not in response.text
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_the_largest_cursor_still_pages(api: httpx.AsyncClient, tenant: Tenant) -> None:
    variables = {"sessionId": str(tenant.session_id), "after": _cursor(f"audit:{2**63 - 1}")}
    response = await api.post(
        "/graphql",
        json={"query": _AUDIT, "variables": variables},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.json() == {"data": {"auditEvents": {"pageInfo": {"endCursor": None}}}}
