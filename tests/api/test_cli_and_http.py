"""The CLI as scripts drive it, and the API served over real HTTP by `mediagate serve`."""

from __future__ import annotations

import asyncio
import json
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
from mediagate.db import media_rows as repo
from mediagate.db import session_rows
from mediagate.domain.status import MediaStatus
from mediagate.storage.object_store import ObjectStore
from tests.support import daemons
from tests.support.daemons import ServedApi, serve_api
from tests.support.flow import CONFIRM_UPLOAD, GET_UPLOAD_URL, drain_jobs

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
    assert await session_rows.session_organization(wanted) == org
    generated = run_cli(env, "session", "create", "--org", str(org))
    assert await session_rows.session_organization(uuid.UUID(generated.stdout.strip())) == org

    issued = run_cli(env, "token", "--user", str(user), "--org", str(org), "--ttl", "120")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert issued.stdout == token + "\n"
    assert settings.auth.jwt_secret is not None
    claims = jwt.decode(token, settings.auth.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == str(user) and claims["org_id"] == str(org)
    assert 110 <= claims["exp"] - time.time() <= 121
    again = run_cli(env, "token", "--user", str(user), "--org", str(org))
    assert again.returncode == 0, "the user row already exists; token still works"
    assert "role" not in claims
    service = run_cli(env, "token", "--user", str(user), "--org", str(org), "--service")
    claims = jwt.decode(service.stdout.strip(), settings.auth.jwt_secret, algorithms=["HS256"])
    assert claims["role"] == "service" and claims["org_id"] == str(org)


def test_bad_cli_arguments_are_refused(env: dict[str, str]) -> None:
    result = run_cli(env, "session", "create", "--org", "not-a-uuid")
    assert result.returncode == 2 and "not a UUID" in result.stderr
    result = run_cli(env, "serve", "--workers", "0")
    assert result.returncode == 2 and "must be 1 or more" in result.stderr


@pytest.fixture(scope="module")
def served_api(env: dict[str, str], database: None, store: ObjectStore) -> Iterator[ServedApi]:
    with serve_api(env) as served:
        yield served


def test_serve_runs_one_process_per_usable_core_by_default(served_api: ServedApi) -> None:
    assert served_api.serving_processes() == len(os.sched_getaffinity(0))


def test_each_api_process_listens_on_a_socket_of_its_own(served_api: ServedApi) -> None:
    # The kernel then spreads connections over the processes; on one shared socket the
    # process that wakes first can take all of a client's connections.
    assert served_api.listening_sockets() == served_api.serving_processes()


def test_serve_on_a_port_in_use_stops_at_once(env: dict[str, str], served_api: ServedApi) -> None:
    port = served_api.url.rsplit(":", 1)[1]
    result = run_cli(env, "serve", "--port", port, "--workers", "2")
    assert result.returncode != 0 and "Address already in use" in result.stderr


HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 50
MAX_HEADER_BYTES = 4096


@pytest.fixture(scope="module")
def bounded_api(env: dict[str, str], database: None, store: ObjectStore) -> Iterator[str]:
    limits = {
        "HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "HTTP_BODY_TIMEOUT": str(HEADER_TIMEOUT),
        "HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "HTTP_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "HTTP_KEEPALIVE_TIMEOUT": "60",
    }
    # One process: the connection cap is per process.
    with serve_api({**env, **limits}, "--workers", "1") as served:
        yield served.url


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing (a reset counts as closing with nothing); a
    generous bound only catches a server that never closes (the limits are a second)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=60)
    except ConnectionResetError:
        return b""


async def _answers_again(base: str) -> None:
    """Until the server has let go of a test's connections (it sees them close later)."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base) as client:
        while True:
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never took connections again"
            await asyncio.sleep(0.05)


async def test_slow_headers_and_excess_connections_are_cut(bounded_api: str) -> None:
    port = int(bounded_api.rsplit(":", 1)[1])
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(101)]
    for _reader, writer in connections:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
    answers = await asyncio.gather(*(_closed_by_server(reader) for reader, _ in connections))
    # Every one closed without an answer: those over the cap at once, the rest at the
    # header deadline (without it, they would wait forever).
    assert answers == [b""] * 101
    for _reader, writer in connections:
        writer.close()
    await _answers_again(bounded_api)


async def test_excess_connections_are_closed_at_once(bounded_api: str) -> None:
    port = int(bounded_api.rsplit(":", 1)[1])
    held = []
    for _ in range(MAX_CONNECTIONS):
        # A whole request at once: the connection then idles under the (long) keep-alive
        # limit, which the header deadline does not cut.
        held_reader, held_writer = await asyncio.open_connection("127.0.0.1", port)
        held_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await held_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        held.append((held_reader, held_writer))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    # A complete request that gets no answer at all: the connection was over the cap.
    assert await _closed_by_server(reader) == b""
    for _, held_writer in held:
        held_writer.close()
    writer.close()
    await _answers_again(bounded_api)


async def test_endless_headers_are_cut_at_the_byte_limit(bounded_api: str) -> None:
    """Fast, not slow: within the deadline a client could otherwise send gigabytes. (Three
    times the limit, no end of headers; all of it fits the socket buffers, so the server
    reads it whole and its answer is not lost to a reset.)"""
    port = int(bounded_api.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(12))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + filler)
    await writer.drain()
    answer = await _closed_by_server(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert b"headers too large" in answer
    await _answers_again(bounded_api)


def _request_of_header_bytes(header_bytes: int, body: bytes) -> bytes:
    """A POST whose request line and headers (through the blank line) are exactly
    `header_bytes` long, followed by `body`."""
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\nX-Pad: " % len(body)
    )
    padding = header_bytes - len(head) - len(b"\r\n\r\n")
    return head + b"p" * padding + b"\r\n\r\n" + body


# A 60 KiB body (a large multipart completion is one), sent in one write with headers.
_LARGE_BODY = b'{"query": "{ __typename }"' + b" " * (60 * 1024) + b"}"


@pytest.mark.parametrize(
    ("header_bytes", "body", "answer"),
    [
        (MAX_HEADER_BYTES, _LARGE_BODY, b"HTTP/1.1 200"),
        # A small body: a refused request's unread bytes would reset the connection
        # and lose the answer.
        (MAX_HEADER_BYTES + 1, b'{"query": "{ __typename }"}', b"HTTP/1.1 400"),
    ],
    ids=["headers-at-the-limit", "headers-one-past-it"],
)
async def test_only_header_bytes_count_toward_the_header_limit(
    bounded_api: str, header_bytes: int, body: bytes, answer: bytes
) -> None:
    port = int(bounded_api.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request_of_header_bytes(header_bytes, body))
    await writer.drain()
    response = await _closed_by_server(reader)
    writer.close()
    assert response.startswith(answer), response[:200]
    await _answers_again(bounded_api)


async def test_a_slow_body_gets_408(bounded_api: str) -> None:
    port = int(bounded_api.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Connection: close\r\nContent-Length: 100\r\n\r\n{"query": '
    )
    await writer.drain()
    answer = await _closed_by_server(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"BAD_REQUEST" in answer


async def test_upload_flow_over_real_http(
    served_api: ServedApi, env: dict[str, str], settings: Settings
) -> None:
    org, user = uuid.uuid4(), uuid.uuid4()
    session = run_cli(env, "session", "create", "--org", str(org)).stdout.strip()
    token = run_cli(env, "token", "--user", str(user), "--org", str(org)).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=served_api.url, headers=headers) as client:
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
    from tests.support.api import in_process

    # Preflights are answered by the CORS middleware; no lifespan (and no second
    # database engine) is needed for them.
    app = create_app(load_settings({**env, "CORS_ALLOWED_ORIGINS": "https://app.example"}))
    async with in_process(app, "http://m") as client:
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


_FAILED_START = """
import asyncio, json, sys
from mediagate.api.app import create_app
from mediagate.config import load_settings
from mediagate.db.tables import SessionMedia

async def main():
    app = create_app(load_settings(json.loads(sys.argv[1])))
    try:
        async with app.lifespan():
            print("started")
    except Exception as error:
        print("failed:", type(error).__name__)
    pool = SessionMedia._meta.db.pool
    print("pool closed" if pool is None or pool._pool.is_closing() else "pool open")

asyncio.run(main())
"""


def test_a_failed_start_closes_what_it_had_opened(env: dict[str, str], database: None) -> None:
    """The broker is reached after the database pool is open: nothing answers there."""
    unreachable = {**env, "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{daemons.free_port()}/"}
    result = subprocess.run(
        [sys.executable, "-c", _FAILED_START, json.dumps(unreachable)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "failed:" in result.stdout, result.stdout + result.stderr
    assert "pool closed" in result.stdout, result.stdout + result.stderr
