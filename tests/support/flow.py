"""The client side of the upload flow, as a frontend would run it."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from mediagate.config import Settings
from tests.support.api import Tenant, graphql
from tests.support.broker import drain
from tests.support.daemons import ServedApi, serve_api
from tests.support.worker_process import WorkerProcess

GET_UPLOAD_URL = """
mutation Upload($sessionId: UUID!, $filename: String!, $contentType: String!, $stage: String) {
  getUploadUrl(
    sessionId: $sessionId, filename: $filename, contentType: $contentType, stage: $stage
  ) {
    uploadUrl fileKey expiresIn
  }
}
"""

CONFIRM_UPLOAD = """
mutation Confirm($sessionId: UUID!, $fileKey: String!, $stage: String, $alt: String) {
  confirmUpload(sessionId: $sessionId, fileKey: $fileKey, stage: $stage, alt: $alt) {
    id url alt status rejectionReason
  }
}
"""

MEDIA = """
query Media($id: UUID!) {
  media(id: $id) {
    id sessionId fileKey status originalFilename contentType stage alt fileSize
    rejectionReason url posterUrl width height durationSeconds uploadedAt processedAt createdAt
  }
}
"""

SESSION_MEDIA = """
query SessionMedia($sessionId: UUID!, $stage: String) {
  sessionMedia(sessionId: $sessionId, stage: $stage) { id fileKey status stage url }
}
"""


async def request_upload(
    client: httpx.AsyncClient,
    tenant: Tenant,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    stage: str | None = "inspection",
) -> dict[str, Any]:
    body = await graphql(
        client,
        GET_UPLOAD_URL,
        {
            "sessionId": str(tenant.session_id),
            "filename": filename,
            "contentType": content_type,
            "stage": stage,
        },
        tenant.token,
    )
    assert "errors" not in body, body
    ticket: dict[str, Any] = body["data"]["getUploadUrl"]
    return ticket


async def put_object(url: str, data: bytes, content_type: str) -> None:
    """The browser's step: PUT the bytes straight to the store over HTTP."""
    async with httpx.AsyncClient() as s3:
        response = await s3.put(url, content=data, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text


async def confirm(
    client: httpx.AsyncClient, tenant: Tenant, file_key: str, alt: str | None = None
) -> dict[str, Any]:
    return await graphql(
        client,
        CONFIRM_UPLOAD,
        {"sessionId": str(tenant.session_id), "fileKey": file_key, "alt": alt},
        tenant.token,
    )


async def upload(
    client: httpx.AsyncClient,
    tenant: Tenant,
    data: bytes,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
) -> dict[str, Any]:
    """getUploadUrl -> PUT -> confirmUpload; returns confirmUpload's data and the key."""
    ticket = await request_upload(client, tenant, filename, content_type)
    await put_object(ticket["uploadUrl"], data, content_type)
    body = await confirm(client, tenant, ticket["fileKey"], alt="a photo")
    assert "errors" not in body, body
    return {**body["data"]["confirmUpload"], "fileKey": ticket["fileKey"]}


async def drain_jobs(settings: Settings) -> list[dict[str, Any]]:
    """Every message now on the media queue (removed from it)."""
    return [
        {**json.loads(message.body), "_delivery_mode": message.delivery_mode}
        for message in await drain(settings, settings.broker.media_queue)
    ]


# A frontend's pause before asking again after SERVICE_UNAVAILABLE, and how long it asks.
CLIENT_RETRY_SECONDS = 0.2
CLIENT_GIVES_UP_SECONDS = 120.0


async def ask_until_available(
    client: httpx.AsyncClient,
    tenant: Tenant,
    query: str,
    variables: dict[str, Any],
    answers: Counter[str],
) -> dict[str, Any]:
    """As a frontend does: ask again after SERVICE_UNAVAILABLE; any other error fails.
    Counts every answer's code (or "ok") in `answers`; fails if still unavailable after
    CLIENT_GIVES_UP_SECONDS."""
    deadline = time.monotonic() + CLIENT_GIVES_UP_SECONDS
    while True:
        body = await graphql(client, query, variables, tenant.token)
        codes = [error["extensions"]["code"] for error in body.get("errors", [])]
        answers.update(codes or ["ok"])
        if codes != ["SERVICE_UNAVAILABLE"]:
            assert "errors" not in body, body
            data: dict[str, Any] = body["data"]
            return data
        assert time.monotonic() < deadline, f"still unavailable: {body}"
        await asyncio.sleep(CLIENT_RETRY_SECONDS)


async def upload_until_available(
    client: httpx.AsyncClient, tenant: Tenant, data: bytes, answers: Counter[str]
) -> None:
    """getUploadUrl -> PUT -> confirmUpload, each call asked again while unavailable."""
    variables = {
        "sessionId": str(tenant.session_id),
        "filename": "p.jpg",
        "contentType": "image/jpeg",
    }
    asked = await ask_until_available(client, tenant, GET_UPLOAD_URL, variables, answers)
    ticket = asked["getUploadUrl"]
    await put_object(ticket["uploadUrl"], data, "image/jpeg")
    confirmed = {"sessionId": str(tenant.session_id), "fileKey": ticket["fileKey"]}
    await ask_until_available(client, tenant, CONFIRM_UPLOAD, confirmed, answers)


async def burst(
    api_url: str,
    count: int,
    tasks: int,
    upload_one: Callable[[httpx.AsyncClient], Awaitable[object]],
    midway: Callable[[], Awaitable[None]],
) -> None:
    """`count` uploads from `tasks` client tasks (a client each), `midway` beside them."""
    started = iter(range(count))

    async def client_task() -> None:
        async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
            for _ in started:
                await upload_one(client)

    await asyncio.gather(midway(), *(client_task() for _ in range(tasks)))


@asynccontextmanager
async def served_with_a_worker(
    env: dict[str, str], settings: Settings, log: Path
) -> AsyncIterator[ServedApi]:
    """`mediagate serve` (one process, its log to `log`) and one `mediagate worker` on
    `env`, until the block ends."""
    with serve_api(env, "--workers", "1", log=log) as served:
        worker = WorkerProcess(env)
        await worker.start(settings)
        try:
            yield served
        finally:
            worker.stop()
