"""Live status at scale: 1,000 open mediaUpdated subscriptions on one API process.

All subscribers follow one session; a row of it is moved to COMPLETED (and back) by a
commit the bench makes itself. Prints the time from that commit to delivery at every
subscriber (p50, p99, worst), the API process's memory per idle subscription, and
getUploadUrl throughput (wrk, on another session) with and without the subscriptions
open, turn and turn about in one run. The subscribers run in client processes of their
own, so the bench's own JSON parsing does not queue behind the server's sends.
Run: `just bench-subscriptions` (or `.venv/bin/python bench/subscriptions_bench.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api_bench import (  # noqa: E402
    Stack,
    create_session,
    prepared_stack,
    run_wrk,
    served_api,
    wrk_script,
)
from tests.support.graphql_ws import graphql_socket  # noqa: E402

from mediagate.db import engine as db_engine  # noqa: E402
from mediagate.db import media_repository as repo  # noqa: E402
from mediagate.domain import keys  # noqa: E402


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def subscriber_process(
    http_url: str, token: str, session_id: str, count: int, pipe: Connection
) -> None:
    """`count` subscribers; reports when all are open, then each delivery's arrival time
    (time.time) per round, until told to stop."""
    asyncio.run(_subscribers(http_url, token, session_id, count, pipe))


async def _subscribers(
    http_url: str, token: str, session_id: str, count: int, pipe: Connection
) -> None:
    arrivals: list[float] = []
    opened = asyncio.Event()
    all_arrived = asyncio.Event()
    ready = 0
    stop = asyncio.Event()

    async def subscriber() -> None:
        nonlocal ready
        async with graphql_socket(http_url) as socket_:
            await socket_.init(token)
            await socket_.subscribe("s", sessionId=session_id)
            await socket_.receive()  # the current state
            ready += 1
            if ready == count:
                opened.set()
            while True:
                message = await socket_.connection.recv()
                arrivals.append(time.time())  # before parsing: the bench's own cost
                assert json.loads(message)["type"] == "next", message
                if len(arrivals) >= count:
                    all_arrived.set()

    tasks = []
    for start in range(0, count, 50):  # not all handshakes at once
        tasks += [asyncio.create_task(subscriber()) for _ in range(min(50, count - start))]
        await asyncio.sleep(0.05)
    await opened.wait()
    pipe.send("open")
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "stop":
            stop.set()
        else:  # "collect": wait for `count` arrivals, hand them over
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_arrived.wait(), 60)
            pipe.send(arrivals[:])
            arrivals.clear()
            all_arrived.clear()
    for task in tasks:
        task.cancel()


async def commit_rounds(
    stack: Stack, media_id: uuid.UUID, pipes: list[Connection], per_pipe: int, rounds: int
) -> list[float]:
    connection = await asyncpg.connect(stack.settings.database_url)
    latencies: list[float] = []
    try:
        for round_ in range(rounds):
            status = "COMPLETED" if round_ % 2 == 0 else "PROCESSING"
            await connection.execute(
                "UPDATE session_media SET status = $1, processed_at = now(), "
                "processed_key = 'processed/bench.jpg', width = 600, height = 450 WHERE id = $2",
                status,
                media_id,
            )
            committed = time.time()
            for pipe in pipes:
                pipe.send("collect")
            for pipe in pipes:
                arrivals = pipe.recv()
                if len(arrivals) < per_pipe:
                    raise SystemExit(f"only {len(arrivals)} of {per_pipe} deliveries arrived")
                latencies += [(arrival - committed) * 1000 for arrival in arrivals]
    finally:
        await connection.close()
    return latencies


async def followed_media(stack: Stack, session_id: uuid.UUID) -> uuid.UUID:
    """One row of the followed session, for the bench's commits to move."""
    engine = db_engine.bind_engine(stack.settings)
    await db_engine.start_pool(engine, 2)
    try:
        await repo.ensure_user(stack.user, stack.organization)
        media_id = await repo.insert_pending(
            organization_id=stack.organization,
            session_id=session_id,
            file_key=keys.upload_key(session_id, "general", ".jpg"),
            original_filename="bench.jpg",
            content_type="image/jpeg",
            stage="general",
            uploaded_by=stack.user,
            upload_expires_at=datetime.now(UTC) + timedelta(minutes=5),
        )
    finally:
        await engine.close_connection_pool()
    assert media_id is not None
    return media_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2, help="subscriber processes")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_client = args.subscribers // args.clients

    with prepared_stack() as stack, tempfile.TemporaryDirectory() as scratch:
        followed_session = create_session(stack.env, stack.organization)
        media_id = asyncio.run(followed_media(stack, followed_session))
        with served_api(stack, workers=1) as (url, pid):
            http_url = url.removesuffix("/graphql")
            script = wrk_script(Path(scratch), stack.session_id, stack.token)
            run_wrk(url, script, 16, 2)  # warm-up
            without = [run_wrk(url, script, 64, args.seconds)]
            idle_rss = rss_kib(pid)
            pipes, processes = [], []
            for _ in range(args.clients):
                ours, theirs = multiprocessing.Pipe()
                process = multiprocessing.Process(
                    target=subscriber_process,
                    args=(http_url, stack.token, str(followed_session), per_client, theirs),
                )
                process.start()
                pipes.append(ours)
                processes.append(process)
            for pipe in pipes:
                assert pipe.recv() == "open"
            open_rss = rss_kib(pid)
            with_open = [run_wrk(url, script, 64, args.seconds)]
            latencies = asyncio.run(commit_rounds(stack, media_id, pipes, per_client, args.rounds))
            with_open.append(run_wrk(url, script, 64, args.seconds))
            for pipe in pipes:
                pipe.send("stop")
            for process in processes:
                process.join(timeout=60)
            without.append(run_wrk(url, script, 64, args.seconds))

    subscribers = per_client * args.clients
    latencies.sort()
    per_subscription = (open_rss - idle_rss) / subscribers
    print(f"\n{subscribers} subscriptions on one API process, {args.rounds} commits")
    print(
        f"commit -> delivery at every subscriber: p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1]:.1f} ms, worst {latencies[-1]:.1f} ms"
    )
    print(
        f"API RSS {idle_rss / 1024:.0f} MiB idle, {open_rss / 1024:.0f} MiB with them open: "
        f"{per_subscription:.1f} KiB per subscription"
    )
    rps_without = statistics.mean(r["rps"] for r in without)
    rps_with = statistics.mean(r["rps"] for r in with_open)
    print(
        "getUploadUrl c64 req/s without: "
        + ", ".join(f"{r['rps']:.0f}" for r in without)
        + "; with them open: "
        + ", ".join(f"{r['rps']:.0f}" for r in with_open)
        + f"; ratio {rps_with / rps_without:.3f}"
    )


if __name__ == "__main__":
    main()
