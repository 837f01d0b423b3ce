"""The client side of a multipart upload, as a frontend runs it: start, PUT the parts
(retrying one that fails), complete; and the GraphQL documents for each step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from mediagate.db import media_rows as repo
from mediagate.domain.status import MediaStatus
from mediagate.storage.multipart import MultipartUploads
from mediagate.storage.object_store import ObjectStore
from tests.support.api import Tenant, graphql

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


async def race_complete_and_abort(
    client: httpx.AsyncClient, tenant: Tenant, store: ObjectStore, rounds: int
) -> list[str]:
    """`rounds` uploads of one part, each completed and aborted at once: exactly one of
    the two wins, the other gets CONFLICT, and an aborted upload leaves no object and no
    open upload. Returns which won each round."""
    winners = []
    for _ in range(rounds):
        ticket = (await start(client, tenant, 1024 * 1024))["data"]["startMultipartUpload"]
        etag = await put_part(ticket["parts"][0]["url"], b"p" * 1024 * 1024)
        parts = [{"partNumber": 1, "etag": etag}]
        completing, aborting = await asyncio.gather(
            call(client, tenant, COMPLETE, ticket, parts=parts),
            call(client, tenant, ABORT, ticket),
        )
        won = [
            name
            for name, body in (("complete", completing), ("abort", aborting))
            if "errors" not in body
        ]
        lost = [body for body in (completing, aborting) if "errors" in body]
        assert len(won) == 1 and len(lost) == 1, (completing, aborting)
        assert [error["extensions"]["code"] for error in lost[0]["errors"]] == ["CONFLICT"]
        stored = await store.head(ticket["fileKey"])
        record = await repo.find_by_key(ticket["fileKey"])
        assert record is not None
        if won == ["abort"]:
            assert record.status is MediaStatus.REJECTED and stored is None
            prefix = ticket["fileKey"]
            assert await MultipartUploads(store).open_uploads(prefix, 10) == []
        else:
            assert record.status is not MediaStatus.REJECTED and stored is not None
        winners += won
    return winners
