"""Status change → webhook arrival, on the real stack: PostgreSQL, the dispatcher of
`mediagate worker` in 1 and then 2 processes of its own, a receiver on loopback.

Events are made at a steady rate (default 100/s) by committing DELETED on pending rows,
which the trigger turns into `media.deleted` events; the latency is from each commit to
the receiver's arrival (one clock: the same machine). Prints p50/p99 per process count.
Run: `just bench-webhooks` (or `.venv/bin/python bench/webhook_bench.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import daemons  # noqa: E402
from tests.support.environment import make_env  # noqa: E402
from tests.support.rows import unbounded  # noqa: E402

from mediagate.config import load_settings  # noqa: E402
from mediagate.db import engine as db_engine  # noqa: E402
from mediagate.db import media_rows as repo  # noqa: E402
from mediagate.db import session_rows, webhook_rows  # noqa: E402
from mediagate.domain.audit import Actor  # noqa: E402
from mediagate.domain.status import MediaStatus  # noqa: E402
from mediagate.domain.webhooks import new_secret  # noqa: E402


class _Arrivals:
    def __init__(self, expected: int) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.expected = expected
        self.all_in = threading.Event()


def _receiver(arrivals: _Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            media_id = json.loads(body)["data"]["id"]
            with arrivals.lock:
                arrivals.at.setdefault(media_id, time.time())
                if len(arrivals.at) >= arrivals.expected:
                    arrivals.all_in.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _dispatch(env: dict[str, str]) -> None:
    """One process's dispatcher, as `mediagate worker` runs it."""
    from mediagate.outbound.http import OutboundClient
    from mediagate.worker.metrics import WorkerMetrics
    from mediagate.worker.webhooks import WebhookDispatcher

    async def run() -> None:
        settings = load_settings(env)
        engine = db_engine.bind_engine(settings)
        await db_engine.start_pool(engine, 4)
        client = OutboundClient(settings.outbound)
        await WebhookDispatcher(settings, client, WorkerMetrics()).run()

    asyncio.run(run())


def _start_dispatchers(env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, __file__, "--dispatch", json.dumps(env)])
        for _ in range(count)
    ]


async def _round(env: dict[str, str], processes: int, events: int, rate: float) -> list[float]:
    arrivals = _Arrivals(events)
    server = _receiver(arrivals)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    organization = uuid.uuid4()
    session_id = await session_rows.create_session(organization)
    endpoint = await webhook_rows.add_endpoint(organization, url, (), new_secret(), 10)
    assert endpoint is not None
    user = uuid.uuid4()
    await session_rows.ensure_user(user, organization)
    ids = []
    for n in range(events):
        media_id = await repo.insert_pending(
            organization_id=organization,
            session_id=session_id,
            file_key=f"sessions/{session_id}/inspection/{n}-{uuid.uuid4()}.jpg",
            original_filename="a.jpg",
            content_type="image/jpeg",
            stage="inspection",
            uploaded_by=user,
            upload_expires_at=datetime.now(UTC) + timedelta(hours=1),
            bounds=unbounded(events + 1),
        )
        assert media_id is not None
        ids.append(media_id)
    workers = _start_dispatchers(env, processes)
    committed: dict[str, float] = {}
    try:
        await asyncio.sleep(2)  # the dispatchers start (a bench, not a test)
        started = time.monotonic()
        for n, media_id in enumerate(ids):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            await repo.transition(media_id, MediaStatus.DELETED, actor=Actor.operator("bench"))
            committed[str(media_id)] = time.time()
        await asyncio.to_thread(arrivals.all_in.wait, 60)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
        server.shutdown()
    return [arrivals.at[key] - committed[key] for key in committed if key in arrivals.at]


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


async def main(events: int, rate: float) -> None:
    database = await daemons.create_database()
    env = make_env(database, "http://127.0.0.1:9", WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32")
    engine = db_engine.bind_engine(load_settings(env))
    await db_engine.start_pool(engine, 4)
    try:
        assert await db_engine.migrate()
        for processes in (1, 2):
            latencies = await _round(env, processes, events, rate)
            p50, p99 = (_quantile(latencies, q) * 1000 for q in (0.5, 0.99))
            print(
                f"{processes} dispatcher process(es), {rate:g} events/s: "
                f"{len(latencies)}/{events} arrived, p50 {p50:.0f} ms, p99 {p99:.0f} ms"
            )
    finally:
        await engine.close_connection_pool()
        await daemons.drop_database(database)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--dispatch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dispatch:
        _dispatch(json.loads(args.dispatch))
    else:
        asyncio.run(main(args.events, args.rate))
    os._exit(0)
