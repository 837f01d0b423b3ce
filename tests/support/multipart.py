"""The client side of a multipart upload, as a frontend runs it: start, PUT the parts
(retrying one that fails), complete; and the GraphQL documents for each step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Tenant, graphql

START = """
mutation Start(
  $sessionId: UUID!, $filename: String!, $contentType: String!, $size: Long!, $stage: String
) {
  startMultipartUpload(
    sessionId: $sessionId, filename: $filename, contentType: $contentType, size: $size,
    stage: $stage
  ) {
    fileKey uploadId partSize partCount expiresIn parts { partNumber url }
  }
}
"""

PART_URLS = """
mutation PartUrls($sessionId: UUID!, $fileKey: String!, $uploadId: String!, $partNumbers: [Int!]!) {
  uploadPartUrls(
    sessionId: $sessionId, fileKey: $fileKey, uploadId: $uploadId, partNumbers: $partNumbers
  ) { partNumber url }
}
"""

UPLOADED_PARTS = """
query Parts($sessionId: UUID!, $fileKey: String!, $uploadId: String!) {
  uploadedParts(sessionId: $sessionId, fileKey: $fileKey, uploadId: $uploadId) {
    partNumber size etag
  }
}
"""

COMPLETE = """
mutation Complete(
  $sessionId: UUID!, $fileKey: String!, $uploadId: String!, $parts: [CompletedPart!]!,
  $alt: String
) {
  completeMultipartUpload(
    sessionId: $sessionId, fileKey: $fileKey, uploadId: $uploadId, parts: $parts, alt: $alt
  ) { id status alt rejectionReason }
}
"""

ABORT = """
mutation Abort($sessionId: UUID!, $fileKey: String!, $uploadId: String!) {
  abortMultipartUpload(sessionId: $sessionId, fileKey: $fileKey, uploadId: $uploadId) {
    id status rejectionReason
  }
}
"""


class PartFailed(Exception):
    """The connection dropped in the middle of a part."""


async def start(
    client: httpx.AsyncClient,
    tenant: Tenant,
    size: int | str,
    filename: str = "car.mp4",
    content_type: str = "video/mp4",
) -> dict[str, Any]:
    return await graphql(
        client,
        START,
        {
            "sessionId": str(tenant.session_id),
            "filename": filename,
            "contentType": content_type,
            "size": size,
            "stage": "inspection",
        },
        tenant.token,
    )


def ids(tenant: Tenant, ticket: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessionId": str(tenant.session_id),
        "fileKey": ticket["fileKey"],
        "uploadId": ticket["uploadId"],
    }


async def call(
    client: httpx.AsyncClient,
    tenant: Tenant,
    document: str,
    ticket: dict[str, Any],
    **variables: Any,
) -> dict[str, Any]:
    return await graphql(client, document, {**ids(tenant, ticket), **variables}, tenant.token)


def read_part(source: Path, number: int, part_size: int) -> bytes:
    with source.open("rb") as stream:
        stream.seek((number - 1) * part_size)
        return stream.read(part_size)


async def _dropping_midway(data: bytes) -> AsyncIterator[bytes]:
    yield data[: len(data) // 2]
    raise PartFailed("connection lost")


async def put_part(url: str, data: bytes, *, drop_midway: bool = False) -> str:
    """PUT one part; returns its ETag. `drop_midway` cuts the connection half-way."""
    headers = {"Content-Length": str(len(data))}
    async with httpx.AsyncClient(timeout=120) as s3:
        if drop_midway:
            try:
                await s3.put(url, content=_dropping_midway(data), headers=headers)
            except (PartFailed, httpx.HTTPError) as error:
                raise PartFailed(str(error)) from error
            raise AssertionError("a part cut half-way was accepted")
        response = await s3.put(url, content=data, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["ETag"]


async def put_part_retrying(url: str, data: bytes, *, fail_first: bool = False) -> str:
    """The client's rule: a part that fails is sent again (here, once is enough)."""
    try:
        return await put_part(url, data, drop_midway=fail_first)
    except PartFailed:
        return await put_part(url, data)


def completed(etags: dict[int, str]) -> list[dict[str, Any]]:
    return [{"partNumber": number, "etag": etags[number]} for number in sorted(etags)]
