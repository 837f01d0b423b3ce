"""500 uploads started at once, end to end on the scale-out stack: Ceph RGW with its real
bucket events, a three-node RabbitMQ cluster with quorum queues, `mediagate serve
--workers 2` and two `mediagate worker` processes, 16 client tasks each doing
getUploadUrl -> PUT -> confirmUpload.

Reports the time until every confirmUpload was answered and until every upload was
COMPLETED (the drain), the API's p50/p99 per mutation during the burst, and the peak RSS
(VmHWM) of every process of the stack. `--kill-leader N` SIGKILLs the node leading the
work queue once N uploads are COMPLETED and reports the longest pause in completions
after it (the stall a node loss costs). `--frontend beast` runs RGW's default front end
(see tests/support/rgw.py for why the tests use civetweb). `--broker single` runs the
machine's one RabbitMQ node with classic queues instead, for comparison.
Run: `just bench-burst` (or `.venv/bin/python bench/burst_bench.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import daemons, media  # noqa: E402
from tests.support.api import new_tenant  # noqa: E402
from tests.support.flow import burst, confirm, put_object, request_upload  # noqa: E402
from tests.support.outcomes import all_completed, statuses  # noqa: E402
from tests.support.rabbit_cluster import Cluster, rabbit_cluster  # noqa: E402
from tests.support.rgw import CephGateway, rgw_environment  # noqa: E402
from tests.support.worker_process import WorkerProcess, wait_until  # noqa: E402

from mediagate.config import Settings, load_settings  # noqa: E402
from mediagate.db import engine as db_engine  # noqa: E402
from mediagate.db.engine import pool  # noqa: E402
from mediagate.storage.setup import setup_storage  # noqa: E402

PHOTO = media.fixture("landscape_5.jpg")
CLIENT_TASKS = 16


def _peak_rss_mib(pid: int) -> float | None:
    """None for a process that is gone (a node the bench killed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _children(pid: int) -> list[int]:
    """Children of every thread of the process (a pool's thread starts some of them)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]


def _tree(name: str, pid: int) -> Iterator[tuple[str, int]]:
    yield name, pid
    for child in _children(pid):
        yield from _tree(f"{name} > {_command(child)}", child)


# What a child process is, by a word of its command line.
_ROLES = {b"serve_fd": "decoder", b"spawn_main": "server process", b"resource_tracker": "tracker"}


def _command(pid: int) -> str:
    line = Path(f"/proc/{pid}/cmdline").read_bytes()
    return next((role for word, role in _ROLES.items() if word in line), "child")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _longest_pause_after(session: str, moment: float) -> float:
    times = sorted(
        row[0].timestamp()
        for row in await pool().fetch(
            "SELECT processed_at FROM session_media WHERE session_id = $1::uuid", session
        )
    )
    after = [t for t in times if t >= moment]
    return float(max(b - a for a, b in zip([moment, *after], after, strict=False)))


async def run(args: argparse.Namespace, workdir: Path) -> None:
    with ExitStack() as stack:
        (workdir / "clamd").mkdir()
        clamd = daemons.Clamd(workdir / "clamd", daemons.free_port())
        clamd.start()
        stack.callback(clamd.stop)
        (workdir / "ceph").mkdir()
        gateway = CephGateway(workdir / "ceph", frontend=args.frontend)
        gateway.start()
        stack.callback(gateway.stop)
        (workdir / "rabbit").mkdir()
        cluster = (
            stack.enter_context(rabbit_cluster(workdir / "rabbit"))
            if args.broker == "cluster"
            else None
        )
        database = await daemons.create_database()
        users = [gateway.create_user(name) for name in ("mediagate", "mediagate-upload")]
        env = rgw_environment(
            database,
            gateway,
            *users,
            CLAMAV_PORT=str(clamd.port),
            AMQP_URL=daemons.AMQP_URL if cluster is None else cluster.amqp_url,
            QUEUE_TYPE="classic" if cluster is None else "quorum",
            AMQP_PUBLISH_TIMEOUT="15",
            MAX_PENDING_UPLOADS_PER_USER=str(args.uploads),
        )
        settings = load_settings(env)
        engine = db_engine.bind_engine(settings)
        await db_engine.start_pool(engine, 4)
        assert await db_engine.migrate()
        setup_storage(settings, bucket_events=True, require_tls=False)
        try:
            await _measure(args, env, settings, cluster, clamd, gateway)
        finally:
            await engine.close_connection_pool()
            await daemons.drop_database(database)


def _peaks(
    api: int,
    workers: list[WorkerProcess],
    clamd: daemons.Clamd,
    gateway: CephGateway,
    cluster: Cluster | None,
) -> list[tuple[str, float]]:
    """Peak RSS of every process of the stack, by a name that says what it is."""
    processes = [*_tree("api", api)]
    for number, worker in enumerate(workers, 1):
        assert worker.process is not None
        processes += _tree(f"worker {number}", worker.process.pid)
    if clamd.pid is not None:
        processes.append(("clamd", clamd.pid))
    processes += gateway.daemon_pids()
    nodes = [] if cluster is None else cluster.nodes
    processes += [(node.name.split("@")[0], node.pid()) for node in nodes]
    return [(name, peak) for name, pid in processes if (peak := _peak_rss_mib(pid)) is not None]


async def _measure(
    args: argparse.Namespace,
    env: dict[str, str],
    settings: Settings,
    cluster: Cluster | None,
    clamd: daemons.Clamd,
    gateway: CephGateway,
) -> None:
    tenant = await new_tenant(settings)
    latencies: dict[str, list[float]] = defaultdict(list)

    async def upload_one(client: httpx.AsyncClient) -> None:
        started = time.perf_counter()
        ticket = await request_upload(client, tenant)
        latencies["getUploadUrl"].append(time.perf_counter() - started)
        await put_object(ticket["uploadUrl"], PHOTO, "image/jpeg")
        started = time.perf_counter()
        body = await confirm(client, tenant, ticket["fileKey"])
        latencies["confirmUpload"].append(time.perf_counter() - started)
        assert "errors" not in body, body

    killed_at: list[float] = []

    async def midway() -> None:
        kill_after: int | None = args.kill_leader
        if kill_after is None or cluster is None:
            return

        async def enough() -> bool:
            return (await statuses(tenant.session_id)).get("COMPLETED", 0) >= kill_after

        await wait_until(enough, "too few completed before the kill", 300)
        leader = await asyncio.to_thread(cluster.queue_leader, settings.broker.media_queue)
        leader.kill()
        killed_at.append(time.time())

    with daemons.serve_api(env, "--workers", "2") as served:
        workers = [WorkerProcess(env), WorkerProcess(env)]
        first = (
            settings
            if cluster is None
            else load_settings({**env, "AMQP_URL": cluster.nodes[0].url})
        )
        try:
            for worker in workers:
                await worker.start(first)
            began = time.perf_counter()
            await burst(served.url, args.uploads, CLIENT_TASKS, upload_one, midway)
            answered = time.perf_counter() - began
            await all_completed(tenant.session_id, args.uploads, timeout=1200)
            drained = time.perf_counter() - began
            peaks = _peaks(served.pid, workers, clamd, gateway, cluster)
        finally:
            for worker in workers:
                worker.stop()

    found = await statuses(tenant.session_id)
    where = "the machine's node, classic queues" if cluster is None else "3 nodes, quorum queues"
    print(f"{args.uploads} uploads, {CLIENT_TASKS} client tasks, RGW {args.frontend}, {where}")
    print(f"  {found}")
    print(f"  every confirmUpload answered after {answered:.1f} s")
    print(f"  every upload COMPLETED after {drained:.1f} s ({args.uploads / drained:.1f}/s)")
    for mutation, values in latencies.items():
        p50, p99 = statistics.median(values), _percentile(values, 0.99)
        print(f"  {mutation}: p50 {1000 * p50:.0f} ms, p99 {1000 * p99:.0f} ms")
    if killed_at:
        pause = await _longest_pause_after(str(tenant.session_id), killed_at[0])
        print(f"  work queue leader killed: longest pause in completions after it {pause:.1f} s")
    print("  peak RSS (MiB):")
    for name, peak in peaks:
        print(f"    {name}: {peak:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=500)
    parser.add_argument("--kill-leader", type=int, metavar="N", help="kill it after N COMPLETED")
    parser.add_argument("--frontend", choices=["civetweb", "beast"], default="civetweb")
    parser.add_argument(
        "--broker",
        choices=["cluster", "single"],
        default="cluster",
        help="single: the machine's RabbitMQ node with classic queues, for comparison",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mediagate-burst-") as workdir:
        asyncio.run(run(args, Path(workdir)))


if __name__ == "__main__":
    main()
