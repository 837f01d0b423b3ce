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
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

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
from tests.support.rows import unbounded  # noqa: E402

from mediagate.db import engine as db_engine  # noqa: E402
from mediagate.db import media_rows as repo  # noqa: E402
from mediagate.db import session_rows  # noqa: E402
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
    stack: Stack, media_id: uuid.UUID, group: Group, rounds: int
) -> list[float]:
    connection = await asyncpg.connect(stack.settings.database.url)
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
            arrivals = group.collect()
            latencies += [(arrival - committed) * 1000 for arrival in arrivals]
    finally:
        await connection.close()
    return latencies


async def followed_media(stack: Stack, session_id: uuid.UUID) -> uuid.UUID:
    """One row of the followed session, for the bench's commits to move."""
    engine = db_engine.bind_engine(stack.settings)
    await db_engine.start_pool(engine, 2)
    try:
        await session_rows.ensure_user(stack.user, stack.organization)
        media_id = await repo.insert_pending(
            organization_id=stack.organization,
            session_id=session_id,
            file_key=keys.upload_key(session_id, "general", ".jpg"),
            original_filename="bench.jpg",
            content_type="image/jpeg",
            stage="general",
            uploaded_by=stack.user,
            upload_expires_at=datetime.now(UTC) + timedelta(minutes=5),
            bounds=unbounded(stack.settings.uploads.max_session_items),
        )
    finally:
        await engine.close_connection_pool()
    assert media_id is not None
    return media_id


class Group(Protocol):
    """Subscribers, all open; `collect` waits for the next message at every one of them
    and returns their arrival times (Unix seconds)."""

    def collect(self) -> list[float]: ...

    def close(self) -> None: ...


@dataclass
class PythonSubscribers:
    """Subscriber processes on the `websockets` library (heavier per message)."""

    pipes: list[Connection]
    processes: list[multiprocessing.Process]
    each: int

    @classmethod
    def open(
        cls, http_url: str, token: str, session_id: uuid.UUID, clients: int, each: int
    ) -> PythonSubscribers:
        opened = cls([], [], each)
        for _ in range(clients):
            ours, theirs = multiprocessing.Pipe()
            process = multiprocessing.Process(
                target=subscriber_process, args=(http_url, token, str(session_id), each, theirs)
            )
            process.start()
            opened.pipes.append(ours)
            opened.processes.append(process)
        for pipe in opened.pipes:
            assert pipe.recv() == "open"
        return opened

    def collect(self) -> list[float]:
        for pipe in self.pipes:
            pipe.send("collect")
        arrivals: list[float] = []
        for pipe in self.pipes:
            arrivals += _all_of(pipe.recv(), self.each)
        return arrivals

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send("stop")
        for process in self.processes:
            process.join(timeout=60)


NODE_CLIENT = Path(__file__).with_name("ws-subscribers")


@dataclass
class NodeSubscribers:
    """All subscribers in one Node.js process on the `ws` library: a light client, so
    the figure is the server's delivery more than the bench's own parsing."""

    process: subprocess.Popen[str]
    count: int

    @classmethod
    def open(cls, http_url: str, token: str, session_id: uuid.UUID, count: int) -> NodeSubscribers:
        if not (NODE_CLIENT / "node_modules").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_CLIENT, check=True)
        ws_url = "ws" + http_url.removeprefix("http") + "/graphql"
        process = subprocess.Popen(
            ["node", "subscribe.mjs", ws_url, token, str(session_id), str(count)],
            cwd=NODE_CLIENT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "open"
        return cls(process, count)

    def collect(self) -> list[float]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("collect\n")
        self.process.stdin.flush()
        arrivals = json.loads(self.process.stdout.readline())
        return _all_of([ms / 1000 for ms in arrivals], self.count)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _all_of(arrivals: list[float], expected: int) -> list[float]:
    if len(arrivals) < expected:
        raise SystemExit(f"only {len(arrivals)} of {expected} deliveries arrived")
    return arrivals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument(
        "--client",
        choices=("node", "python"),
        default="node",
        help="subscribers in one Node.js process (ws), or in Python processes (websockets)",
    )
    parser.add_argument(
        "--clients", type=int, default=2, help="subscriber processes (--client python)"
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument(
        "--pairs", type=int, default=3, help="wrk runs without, then with, the subscriptions"
    )
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    each = args.subscribers // args.clients
    total = args.subscribers if args.client == "node" else each * args.clients

    with prepared_stack() as stack, tempfile.TemporaryDirectory() as scratch:
        followed_session = create_session(stack.env, stack.organization)
        media_id = asyncio.run(followed_media(stack, followed_session))
        with served_api(stack, workers=1) as (url, pid):
            http_url = url.removesuffix("/graphql")
            script = wrk_script(Path(scratch), stack.session_ids, stack.tokens)
            run_wrk(url, script, 16, 2)  # warm-up
            without, with_open = [], []
            for pair in range(args.pairs):
                without.append(run_wrk(url, script, 64, args.seconds))
                if pair == 0:
                    idle_rss = rss_kib(pid)
                subscribers: Group = (
                    NodeSubscribers.open(http_url, stack.tokens[0], followed_session, total)
                    if args.client == "node"
                    else PythonSubscribers.open(
                        http_url, stack.tokens[0], followed_session, args.clients, each
                    )
                )
                if pair == 0:
                    open_rss = rss_kib(pid)
                    latencies = asyncio.run(
                        commit_rounds(stack, media_id, subscribers, args.rounds)
                    )
                with_open.append(run_wrk(url, script, 64, args.seconds))
                subscribers.close()

    latencies.sort()
    print(
        f"\n{total} subscriptions on one API process ({args.client} client), {args.rounds} commits"
    )
    print(
        f"commit -> delivery at every subscriber: p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1]:.1f} ms, worst {latencies[-1]:.1f} ms"
    )
    print(
        f"API RSS {idle_rss / 1024:.0f} MiB idle, {open_rss / 1024:.0f} MiB with them open: "
        f"{(open_rss - idle_rss) / total:.1f} KiB per subscription"
    )
    ratios = [w["rps"] / o["rps"] for o, w in zip(without, with_open, strict=True)]
    print(
        "getUploadUrl c64 req/s, without / with them open: "
        + ", ".join(
            f"{o['rps']:.0f} / {w['rps']:.0f}" for o, w in zip(without, with_open, strict=True)
        )
        + f"; ratio per pair {', '.join(f'{r:.3f}' for r in ratios)}, "
        f"median {statistics.median(ratios):.3f}"
    )


if __name__ == "__main__":
    main()
