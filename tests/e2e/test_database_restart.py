"""PostgreSQL restarted in the middle of a burst of uploads: the API answers a typed
SERVICE_UNAVAILABLE while it is down and recovers without a restart, the workers wait
for it, and every upload ends COMPLETED."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from mediagate.auth.tokens import issue_token
from mediagate.config import load_settings
from mediagate.domain.principal import Principal
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons, media
from tests.support.api import Tenant, error_codes, graphql
from tests.support.daemons import run_cli
from tests.support.environment import own_names
from tests.support.flow import (
    GET_UPLOAD_URL,
    burst,
    served_with_a_worker,
    upload_until_available,
)
from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.worker_process import dead_letters, wait_until

PHOTO = media.fixture("landscape_2.jpg")
UPLOADS = 40
CLIENT_TASKS = 8


@pytest.fixture
def own_database() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


async def _statuses(url: str, session_id: uuid.UUID) -> Counter[str]:
    """The session's rows by status (nothing while the server is down)."""
    try:
        connection = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError):
        return Counter()
    try:
        rows = await connection.fetch(
            "SELECT status::text AS s FROM session_media WHERE session_id = $1", session_id
        )
    finally:
        await connection.close()
    return Counter(row["s"] for row in rows)


async def test_a_database_restart_mid_burst_is_waited_out(
    env: dict[str, str],
    own_database: PrivatePostgres,
    clamd: daemons.Clamd,
    store: ObjectStore,
    api: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    own = {
        **env,
        "DATABASE_URL": own_database.url,
        **own_names("pgrestart"),
    }
    settings = load_settings(own)
    run_cli(own, "migrate")
    organization = uuid.uuid4()
    session_id = uuid.UUID(
        run_cli(own, "session", "create", "--org", str(organization)).stdout.strip()
    )
    principal = Principal(uuid.uuid4(), organization)
    tenant = Tenant(principal, session_id, issue_token(settings, principal, 3600))
    answers: Counter[str] = Counter()

    async def upload_one(client: httpx.AsyncClient) -> None:
        await upload_until_available(client, tenant, PHOTO, answers)

    async with served_with_a_worker(own, settings, tmp_path / "api.log") as served:

        async def restart_midway() -> None:
            async def some_completed() -> bool:
                return (await _statuses(own_database.url, session_id))["COMPLETED"] >= 5

            await wait_until(some_completed, "nothing completed before the restart")
            await asyncio.to_thread(own_database.stop)
            async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
                variables = {
                    "sessionId": str(session_id),
                    "filename": "p.jpg",
                    "contentType": "image/jpeg",
                }
                down = await graphql(client, GET_UPLOAD_URL, variables, tenant.token)
            assert error_codes(down) == ["SERVICE_UNAVAILABLE"], down
            assert "Traceback" not in str(down)
            await asyncio.to_thread(own_database.start)

        await burst(served.url, UPLOADS, CLIENT_TASKS, upload_one, restart_midway)

        async def all_completed() -> bool:
            return (await _statuses(own_database.url, session_id))["COMPLETED"] == UPLOADS

        await wait_until(all_completed, "not every upload completed", timeout=180)
    assert await _statuses(own_database.url, session_id) == Counter({"COMPLETED": UPLOADS})
    assert answers["INTERNAL_SERVER_ERROR"] == 0, answers
    assert await dead_letters(settings) == []
