"""getUploadUrl on the real stack: PostgreSQL, RabbitMQ, the S3 test server, `mediagate serve`.

Prints requests/s, p50 and p99 latency at concurrency 1, 16 and 64 (load from wrk on
the same machine), the API processes' peak RSS, and the cost of the presign call and
of the INSERT alone. Run: `just bench-api` (or `.venv/bin/python bench/api_bench.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import daemons  # noqa: E402
from tests.support.environment import make_env  # noqa: E402
from tests.support.rows import unbounded  # noqa: E402

from mediagate.auth.tokens import issue_token  # noqa: E402
from mediagate.config import Settings, load_settings  # noqa: E402
from mediagate.db import engine as db_engine  # noqa: E402
from mediagate.db import media_rows as repo  # noqa: E402
from mediagate.db import session_rows  # noqa: E402
from mediagate.domain import keys  # noqa: E402
from mediagate.domain.principal import Principal  # noqa: E402
from mediagate.storage.object_store import ObjectStore  # noqa: E402
from mediagate.storage.setup import setup_storage  # noqa: E402

QUERY = (
    'mutation($s: UUID!) { getUploadUrl(sessionId: $s, filename: "car.jpg", '
    'contentType: "image/jpeg", stage: "inspection") { uploadUrl fileKey expiresIn } }'
)
# --sized: the size declared (and signed into the URL).
SIZED_QUERY = QUERY.replace('stage: "inspection")', 'stage: "inspection", size: 3500000)')
# Requests go round these many users of the organization: each holds fewer outstanding
# URLs in a run than MAX_PENDING_UPLOADS_PER_USER allows.
USERS = 1024
SIZED = {"UPLOAD_REQUIRE_SIZE": "true"}
QUOTA = {"ORG_STORAGE_QUOTA_BYTES": str(2**62)}


# Requests go round these many sessions, as many users' uploads would: one session
# takes at most MAX_SESSION_ITEMS, and its count is one row all its uploads update.
SESSIONS = 64


def wrk_script(
    directory: Path,
    session_ids: list[uuid.UUID],
    tokens: list[str],
    query: str = QUERY,
    name: str = "mediagate",
) -> Path:
    """Requests round the sessions and, apart, round the users (one token each)."""
    bodies = [json.dumps({"query": query, "variables": {"s": str(s)}}) for s in session_ids]
    script = directory / f"get_upload_url_{name}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"local bodies = {{{', '.join(json.dumps(body) for body in bodies)}}}\n"
        f"local tokens = {{{', '.join(json.dumps(token) for token in tokens)}}}\n"
        "local sent = 0\n"
        "request = function()\n"
        "  sent = sent + 1\n"
        '  local headers = {["Content-Type"] = "application/json",'
        ' ["Authorization"] = "Bearer " .. tokens[sent % #tokens + 1]}\n'
        "  return wrk.format(nil, nil, headers, bodies[sent % #bodies + 1])\n"
        "end\n"
    )
    return script


def _to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def busy_cpu_seconds() -> float:
    """CPU time this machine spent on anything (user, system, interrupts), all cores:
    what each request costs, which a noisy neighbour's steal does not inflate."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    busy_before = busy_cpu_seconds()
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    requests = float(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "requests": requests,
        "cpu_us": (busy_cpu_seconds() - busy_before) / max(requests, 1) * 1e6,
        "p50_ms": _to_ms(latency["50"]),
        "p99_ms": _to_ms(latency["99"]),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


@contextlib.contextmanager
def profiling(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy sampling the server and its processes (GIL holders and idle frames apart)."""
    if output is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    recorder = subprocess.Popen(
        [
            *(py_spy, "record", "--pid", str(pid), "--subprocesses", "--format", "raw"),
            *("--rate", "200", "--output", str(output), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)


NESTJS = Path(__file__).with_name("nestjs")
# The spec's schema types sessionId as a String.
NESTJS_QUERY = QUERY.replace("$s: UUID!", "$s: String!")


@contextlib.contextmanager
def nestjs_server(env: dict[str, str]) -> Iterator[str]:
    """The spec's own design (bench/nestjs), built on first use, on the same database,
    tables and S3 server; one Node process, as the spec runs it."""
    if not (NESTJS / "dist" / "main.js").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NESTJS, check=True)
        subprocess.run(["npx", "tsc", "-p", "tsconfig.json"], cwd=NESTJS, check=True)
    port = daemons.free_port()
    server = subprocess.Popen(
        ["node", "dist/main.js"], cwd=NESTJS, env={**os.environ, **env, "PORT": str(port)}
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        wait_until_answers(lambda: httpx.post(url, json={"query": "{ health }"}).status_code)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_answers(status: Callable[[], int]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if status() == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def peak_rss_mib(root_pid: int) -> float:
    """Sum of VmHWM (peak resident set) over the server process and its children."""
    pids = [root_pid]
    children = Path(f"/proc/{root_pid}/task/{root_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total_kib = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        total_kib += int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    return total_kib / 1024


def presign_cost_us(settings: Settings, calls: int = 20000) -> float:
    store = ObjectStore(settings)
    session = uuid.uuid4()
    now, ttl = datetime.now(UTC), timedelta(seconds=300)
    started = time.perf_counter()
    for _ in range(calls):
        store.presign_put(keys.upload_key(session, "general", ".jpg"), ttl, now)
    return (time.perf_counter() - started) / calls * 1e6


async def insert_cost_us(
    settings: Settings, organization: uuid.UUID, user: uuid.UUID
) -> tuple[float, float]:
    """Sequential INSERT latency, and INSERT throughput with 64 concurrent callers (each
    a user with a session of its own)."""
    engine = db_engine.bind_engine(settings)
    await db_engine.start_pool(engine, settings.database.pool_size)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    sessions = [await session_rows.create_session(organization) for _ in range(64)]
    users = {session: uuid.uuid4() for session in sessions}
    for each in users.values():
        await session_rows.ensure_user(each, organization)

    async def insert(session_id: uuid.UUID) -> None:
        await repo.insert_pending(
            organization_id=organization,
            session_id=session_id,
            file_key=keys.upload_key(session_id, "general", ".jpg"),
            original_filename="car.jpg",
            content_type="image/jpeg",
            stage="general",
            uploaded_by=users[session_id],
            upload_expires_at=expires,
            bounds=unbounded(settings.uploads.max_session_items),
        )

    try:
        started = time.perf_counter()
        for _ in range(2000):
            await insert(sessions[0])
        sequential = (time.perf_counter() - started) / 2000 * 1e6
        started = time.perf_counter()

        async def caller(session_id: uuid.UUID) -> None:
            for _ in range(100):
                await insert(session_id)

        await asyncio.gather(*(caller(session) for session in sessions))
        per_second = 6400 / (time.perf_counter() - started)
    finally:
        await engine.close_connection_pool()
    return sequential, per_second


async def count_rows(settings: Settings, session_ids: list[uuid.UUID]) -> int:
    engine = db_engine.bind_engine(settings)
    await db_engine.start_pool(engine, 2)
    try:
        return sum([len(await repo.list_session_media(s, None)) for s in session_ids])
    finally:
        await engine.close_connection_pool()


async def create_sessions(settings: Settings, organization: uuid.UUID) -> list[uuid.UUID]:
    engine = db_engine.bind_engine(settings)
    await db_engine.start_pool(engine, 2)
    try:
        return [await session_rows.create_session(organization) for _ in range(SESSIONS)]
    finally:
        await engine.close_connection_pool()


@dataclass(frozen=True)
class Stack:
    """A migrated database, the S3 test server with its bucket, sessions and a token."""

    env: dict[str, str]
    settings: Settings
    organization: uuid.UUID
    user: uuid.UUID
    session_ids: list[uuid.UUID]
    # Users of the organization, USERS of them.
    tokens: list[str]


CLI = [sys.executable, "-m", "mediagate.cli"]


@contextlib.contextmanager
def prepared_stack(**overrides: str) -> Iterator[Stack]:
    database_url = asyncio.run(daemons.create_database())
    try:
        with daemons.s3_server() as s3:
            env = make_env(database_url, s3, LOG_LEVEL="WARNING", **overrides)
            settings = load_settings(env)
            subprocess.run(
                [*CLI, "migrate"], env=_process_env(env), check=True, capture_output=True
            )
            setup_storage(settings, bucket_events=False, require_tls=False)
            organization, user = uuid.uuid4(), uuid.uuid4()
            session_ids = asyncio.run(create_sessions(settings, organization))
            users = [user, *(uuid.uuid4() for _ in range(USERS - 1))]
            tokens = [issue_token(settings, Principal(u, organization), 3600) for u in users]
            yield Stack(env, settings, organization, user, session_ids, tokens)
    finally:
        asyncio.run(daemons.drop_database(database_url))


def create_session(env: dict[str, str], organization: uuid.UUID) -> uuid.UUID:
    created = subprocess.run(
        [*CLI, "session", "create", "--org", str(organization)],
        env=_process_env(env),
        check=True,
        capture_output=True,
        text=True,
    )
    return uuid.UUID(created.stdout.strip())


def _process_env(env: dict[str, str]) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], **env}


@contextlib.contextmanager
def served_api(stack: Stack, workers: int | None) -> Iterator[tuple[str, int]]:
    """`mediagate serve` on a free port: its GraphQL URL and its process id."""
    port = daemons.free_port()
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)]
        + ([] if workers is None else ["--workers", str(workers)]),
        env=_process_env(stack.env),
    )
    try:
        wait_until_answers(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code)
        yield f"http://127.0.0.1:{port}/graphql", server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--workers",
        type=int,
        help="API processes (default: what `mediagate serve` starts, one per usable core)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="record the API processes with py-spy during the last level (collapsed stacks)",
    )
    parser.add_argument(
        "--sized", action="store_true", help="declare each upload's size (signed into its URL)"
    )
    parser.add_argument(
        "--quota", action="store_true", help="with --sized: an organization quota in force"
    )
    parser.add_argument(
        "--nestjs",
        action="store_true",
        help="then the spec's own NestJS design (bench/nestjs; needs node and npm) at the "
        "last level, on the same database and S3 server",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    overrides = {**(SIZED if args.sized else {}), **(QUOTA if args.quota else {})}
    with prepared_stack(**overrides) as stack, tempfile.TemporaryDirectory() as scratch:
        with served_api(stack, args.workers) as (url, pid):
            query = SIZED_QUERY if args.sized else QUERY
            script = wrk_script(Path(scratch), stack.session_ids, stack.tokens, query)
            run_wrk(url, script, 16, 2)  # warm-up: caches, pools, JIT-free but lazy imports
            *levels, last = args.concurrency
            results = {c: run_wrk(url, script, c, args.seconds) for c in levels}
            with profiling(pid, args.profile):
                results[last] = run_wrk(url, script, last, args.seconds)
            rss = peak_rss_mib(pid)
        rows = asyncio.run(count_rows(stack.settings, stack.session_ids))
        nestjs = None
        if args.nestjs:
            with nestjs_server(stack.env) as nest_url:
                nest_script = wrk_script(
                    Path(scratch), stack.session_ids, stack.tokens, NESTJS_QUERY, "nestjs"
                )
                run_wrk(nest_url, nest_script, 16, 2)
                nestjs = run_wrk(nest_url, nest_script, args.concurrency[-1], args.seconds)
        presign = presign_cost_us(stack.settings)
        insert_seq, insert_rate = asyncio.run(
            insert_cost_us(stack.settings, stack.organization, stack.user)
        )

    total = sum(r["requests"] for r in results.values())
    processes = "default" if args.workers is None else args.workers
    print(f"\ngetUploadUrl, {processes} API process(es), wrk -t1, {args.seconds} s per level")
    print(
        f"{'concurrency':>11} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
        f" {'CPU us/req':>11}"
    )
    for concurrency, r in results.items():
        print(f"{concurrency:>11} {_row(r)}")
    if nestjs is not None:
        last = args.concurrency[-1]
        print(
            f"{'NestJS':>11} {_row(nestjs)}   the spec's design at {last}: mediagate does "
            f"{results[last]['rps'] / nestjs['rps']:.1f}x its requests/s"
        )
    print(f"rows inserted: {rows} for about {total:.0f} measured requests (plus warm-up)")
    print(f"API peak RSS (all processes): {rss:.0f} MiB")
    print(f"presign alone: {presign:.1f} us per URL")
    print(f"INSERT alone: {insert_seq:.0f} us sequential; {insert_rate:.0f}/s with 64 callers")


def _row(r: dict[str, float]) -> str:
    return (
        f"{r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['non_2xx']:>8.0f}"
        f" {r['cpu_us']:>11.0f}"
    )


if __name__ == "__main__":
    main()
