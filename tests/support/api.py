"""Calling the API as a test does: the app in this process, a tenant and its token, a
GraphQL request and the codes of its errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
from litestar import Litestar

from mediagate.auth.tokens import issue_token
from mediagate.config import Settings
from mediagate.db import session_rows
from mediagate.domain.principal import Principal


@asynccontextmanager
async def lifespan_in_own_task(app: Litestar) -> AsyncIterator[None]:
    """Run the app's lifespan in one task: its anyio scopes must exit where they entered."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield
    finally:
        stop.set()
        await task


def in_process(app: Litestar, base_url: str) -> httpx.AsyncClient:
    """A client of the app called in this process (ASGI), no server between."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, app)), base_url=base_url)


@dataclass(frozen=True)
class Tenant:
    """An organization with one user and one session, and that user's token."""

    principal: Principal
    session_id: uuid.UUID
    token: str


async def new_tenant(settings: Settings) -> Tenant:
    principal = Principal(user_id=uuid.uuid4(), organization_id=uuid.uuid4())
    session_id = await session_rows.create_session(principal.organization_id)
    return Tenant(principal, session_id, issue_token(settings, principal, 600))


async def graphql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    body: dict[str, Any] = response.json()
    return body


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def service_token(settings: Settings, tenant: Tenant) -> str:
    """A token of the tenant's organization's backend (role `service`)."""
    backend = Principal(uuid.uuid4(), tenant.principal.organization_id, is_service=True)
    return issue_token(settings, backend, 600)
