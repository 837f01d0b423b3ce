"""The CLI as scripts drive it, and the API served over real HTTP by `mediagate serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest

from mediagate.config import Settings
from mediagate.db import media_repository as repo
from mediagate.domain.status import MediaStatus
from mediagate.storage.object_store import ObjectStore
from tests.support.flow import CONFIRM_UPLOAD, GET_UPLOAD_URL, drain_jobs
from tests.support.services import free_port

MEDIAGATE = [sys.executable, "-m", "mediagate.cli"]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEDIAGATE, *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_twice_is_a_no_op(env: dict[str, str], database: None) -> None:
    second = run_cli(env, "migrate")
    assert second.returncode == 0, second.stderr
    assert "No migrations need to be run" in second.stdout


def test_missing_setting_stops_with_one_line_naming_it(env: dict[str, str]) -> None:
    broken = {k: v for k, v in env.items() if k != "S3_BUCKET"}
    result = run_cli(broken, "migrate")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mediagate: configuration error: S3_BUCKET is required but not set"
    ]
    malformed = run_cli({**env, "MAX_UPLOAD_BYTES": "lots"}, "serve")
    assert malformed.returncode == 2 and "MAX_UPLOAD_BYTES" in malformed.stderr
    assert len(malformed.stderr.strip().splitlines()) == 1


async def test_session_create_and_token_print_only_what_scripts_need(
    env: dict[str, str], settings: Settings, database: None
) -> None:
    org, user, wanted = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    created = run_cli(env, "session", "create", "--org", str(org), "--id", str(wanted))
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"{wanted}\n"
    assert await repo.session_organization(wanted) == org
    generated = run_cli(env, "session", "create", "--org", str(org))
    assert await repo.session_organization(uuid.UUID(generated.stdout.strip())) == org

    issued = run_cli(env, "token", "--user", str(user), "--org", str(org), "--ttl", "120")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert issued.stdout == token + "\n"
    assert settings.jwt_secret is not None
    claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == str(user) and claims["org_id"] == str(org)
    assert 110 <= claims["exp"] - time.time() <= 121
    again = run_cli(env, "token", "--user", str(user), "--org", str(org))
    assert again.returncode == 0, "the user row already exists; token still works"


def test_bad_cli_arguments_are_refused(env: dict[str, str]) -> None:
    result = run_cli(env, "session", "create", "--org", "not-a-uuid")
    assert result.returncode == 2 and "not a UUID" in result.stderr


@pytest.fixture(scope="module")
def served_api(env: dict[str, str], database: None, store: ObjectStore) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [*MEDIAGATE, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={"PATH": os.environ["PATH"], **env},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, "mediagate serve exited"
        assert time.monotonic() < deadline, "mediagate serve never became ready"
        time.sleep(0.1)
    yield base
    process.terminate()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see it.
    assert process.wait(timeout=30) in (0, -15)


async def test_upload_flow_over_real_http(
    served_api: str, env: dict[str, str], settings: Settings
) -> None:
    org, user = uuid.uuid4(), uuid.uuid4()
    session = run_cli(env, "session", "create", "--org", str(org)).stdout.strip()
    token = run_cli(env, "token", "--user", str(user), "--org", str(org)).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=served_api, headers=headers) as client:
        presign = await client.post(
            "/graphql",
            json={
                "query": GET_UPLOAD_URL,
                "variables": {
                    "sessionId": session,
                    "filename": "a.png",
                    "contentType": "image/png",
                },
            },
        )
        ticket = presign.json()["data"]["getUploadUrl"]
        put = await client.put(
            ticket["uploadUrl"],
            content=b"\x89PNG\r\n\x1a\n" + b"0" * 64,
            headers={"Content-Type": "image/png", "Authorization": ""},
        )
        assert put.status_code == 200
        confirmed = await client.post(
            "/graphql",
            json={
                "query": CONFIRM_UPLOAD,
                "variables": {"sessionId": session, "fileKey": ticket["fileKey"]},
            },
        )
    assert confirmed.json()["data"]["confirmUpload"]["status"] == "UPLOADED"
    row = await repo.find_by_key(ticket["fileKey"])
    assert row is not None and row.status is MediaStatus.UPLOADED
    assert ticket["fileKey"] in [job["fileKey"] for job in await drain_jobs(settings)]


async def test_cors_preflight_allows_only_configured_origins(env: dict[str, str]) -> None:
    from mediagate.api.app import create_app
    from mediagate.config import load_settings

    # Preflights are answered by the CORS middleware; no lifespan (and no second
    # database engine) is needed for them.
    app = create_app(load_settings({**env, "CORS_ALLOWED_ORIGINS": "https://app.example"}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as client:
        allowed = await client.options(
            "/graphql",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        denied = await client.options(
            "/graphql",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert allowed.headers.get("access-control-allow-origin") == "https://app.example"
    assert denied.headers.get("access-control-allow-origin") != "https://evil.example"
