"""The processing worker on the real stack: time per stage, throughput, memory, baselines.

Inputs (made on the spot): 12 MP and 24 MP photographic JPEGs with EXIF orientation 6
(and the 24 MP one upright: no rotated copy to hold),
a PNG with alpha, 30 s 1080p videos (H.264/AAC, which is remuxed, and MPEG-4 Part 2,
which is transcoded) and a 5 s 1080p clip to show memory does not grow with length.

Each file goes through the whole pipeline in a fresh worker process (download, scan,
decode+encode, upload, database), which reports its own peak RSS and its decoder
process's. In the same run: libvips (CLI and pyvips in-process) on the same JPEGs,
clamdscan --stream (raw INSTREAM in C) on the same bytes, and the raw ffmpeg command.
Last, through `mediagate worker`, on distinct 12 MP JPEGs (same pixels, bytes of their
own, so clamd's cache of clean results never answers): photos per minute with 1 and 2
worker processes, and confirm -> COMPLETED latency (p50, p95) one photo at a time and in
a burst of 50. `--throughput-only` runs just that last part; `--baseline CHECKOUT` runs
it for an earlier checkout's worker too (with its own venv and its clamd.conf), turn and
turn about with this one, and prints the ratios.
Run: `just bench-worker` (or `.venv/bin/python bench/worker_bench.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402
from tests.support import daemons, media  # noqa: E402
from tests.support.broker import consumers_at_least  # noqa: E402
from tests.support.environment import make_env  # noqa: E402
from tests.support.rows import unbounded  # noqa: E402
from tests.support.worker_process import wait_for_status, wait_until  # noqa: E402

from mediagate.config import Settings, load_settings  # noqa: E402
from mediagate.db import engine as db_engine  # noqa: E402
from mediagate.db import media_rows as repo  # noqa: E402
from mediagate.db import session_rows  # noqa: E402
from mediagate.domain import keys  # noqa: E402
from mediagate.domain.audit import Actor  # noqa: E402
from mediagate.domain.status import MediaStatus  # noqa: E402
from mediagate.domain.webhooks import new_secret  # noqa: E402
from mediagate.events.messages import ProcessJob  # noqa: E402
from mediagate.events.publisher import JobPublisher  # noqa: E402
from mediagate.processing.images import reuse_image_memory, sanitize_image  # noqa: E402
from mediagate.processing.isolation import Decoder, Limits  # noqa: E402
from mediagate.processing.video import _convert_command, probe  # noqa: E402
from mediagate.scanning.clamav import ClamdScanner  # noqa: E402
from mediagate.storage.object_store import ObjectStore  # noqa: E402
from mediagate.storage.setup import setup_storage  # noqa: E402

# ---------------------------------------------------------------- inputs


def photo(path: Path, size: tuple[int, int], *, rotated: bool = True) -> Path:
    """A real phone photo scaled to `size`, stored rotated with EXIF orientation 6 as a
    phone held upright stores it (or upright, as a camera held level does)."""
    with Image.open(media.FIXTURES / "HMD_Nokia_8.3_5G.jpg") as source:
        scaled = source.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    exif = Image.Exif()
    if rotated:
        scaled = scaled.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    scaled.save(path, "JPEG", quality=92, exif=exif.tobytes())
    return path


def distinct_copies(source: Path, count: int, directory: Path) -> list[Path]:
    """`count` JPEGs with the pixels of `source` and bytes of their own (a random comment
    segment after SOI), never seen before in this run: clamd caches clean results by
    hash, so a repeat would measure that."""
    data = source.read_bytes()
    copies = []
    for _ in range(count):
        mark = uuid.uuid4()
        copy = directory / f"{source.stem}-{mark}.jpg"
        comment = b"\xff\xfe\x00\x12" + mark.bytes
        copy.write_bytes(data[:2] + comment + data[2:])
        copies.append(copy)
    return copies


def png_with_alpha(path: Path) -> Path:
    with Image.open(media.FIXTURES / "HMD_Nokia_8.3_5G.jpg") as source:
        rgba = source.convert("RGB").resize((2048, 2048)).convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    rgba.save(path, "PNG")
    return path


def inputs(directory: Path) -> dict[str, tuple[Path, str]]:
    h264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
    mpeg4 = ["-c:v", "mpeg4", "-q:v", "8"]
    return {
        "jpeg 12 MP": (photo(directory / "12mp.jpg", (4000, 3000)), "image/jpeg"),
        "jpeg 24 MP": (photo(directory / "24mp.jpg", (6000, 4000)), "image/jpeg"),
        "jpeg 24 MP upright": (
            photo(directory / "24mp-upright.jpg", (6000, 4000), rotated=False),
            "image/jpeg",
        ),
        "png alpha 4 MP": (png_with_alpha(directory / "alpha.png"), "image/png"),
        "video 5 s 1080p h264 (remux)": (
            media.make_video(directory / "5s.mp4", size="1920x1080", seconds=5, video=h264),
            "video/mp4",
        ),
        "video 30 s 1080p h264 (remux)": (
            media.make_video(directory / "30s.mp4", size="1920x1080", seconds=30, video=h264),
            "video/mp4",
        ),
        "video 30 s 1080p mpeg4 (transcode)": (
            media.make_video(directory / "30s.mov", size="1920x1080", seconds=30, video=mpeg4),
            "video/quicktime",
        ),
    }


# ---------------------------------------------------------------- staging


async def stage(settings: Settings, files: list[tuple[Path, str]]) -> list[str]:
    """Rows in UPLOADED with their objects in the store, as after confirmUpload."""
    engine = db_engine.bind_engine(settings)
    await db_engine.start_pool(engine, 4)
    store = ObjectStore(settings)
    organization, user = uuid.uuid4(), uuid.uuid4()
    session = await session_rows.create_session(organization)
    await session_rows.ensure_user(user, organization)
    staged = []
    try:
        for path, content_type in files:
            key = keys.upload_key(session, "inspection", path.suffix)
            media_id = await repo.insert_pending(
                organization_id=organization,
                session_id=session,
                file_key=key,
                original_filename=path.name,
                content_type=content_type,
                stage="inspection",
                uploaded_by=user,
                upload_expires_at=datetime.now(UTC) + timedelta(minutes=30),
                bounds=unbounded(settings.uploads.max_session_items),
            )
            assert media_id is not None
            await store.upload(key, path, content_type, {})
            await repo.transition(
                media_id,
                MediaStatus.UPLOADED,
                actor=Actor.operator("bench"),
                file_size=path.stat().st_size,
            )
            staged.append(key)
    finally:
        await engine.close_connection_pool()
    return staged


# ---------------------------------------------------------------- one file, own process


def run_child(env: dict[str, str], warm_up_key: str, key: str) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("one_file.py")), warm_up_key, key],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"one_file.py failed on {key}:\n{child.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- baselines


def best_of(runs: int, action: Any) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def image_baselines(source: Path, scratch: Path) -> dict[str, float]:
    import pyvips

    out = scratch / "out.jpg"

    def vips_cli() -> None:
        subprocess.run(["vips", "copy", f"{source}[autorotate]", f"{out}[Q=85,strip]"], check=True)

    def vips_in_process() -> None:
        image = pyvips.Image.new_from_file(str(source), access="sequential", autorotate=True)
        image.write_to_file(str(out), Q=85, strip=True)

    def pillow() -> None:
        sanitize_image(source, "image/jpeg", out)

    decoder = Decoder(initializer=reuse_image_memory)  # as the worker runs it
    limits = Limits(30, 30, 1024**3, "the image")

    def in_decoder_process() -> None:
        decoder.call(sanitize_image, (source, "image/jpeg", out), limits)

    reuse_image_memory()  # as the worker's decoder does
    try:
        return {
            "vips CLI": best_of(3, vips_cli),
            "pyvips": best_of(3, vips_in_process),
            "Pillow in-process": best_of(3, pillow),
            "mediagate (decoder process)": best_of(3, in_decoder_process),
        }
    finally:
        decoder.close()


def scan_baselines(source: Path, settings: Settings, scratch: Path) -> dict[str, float]:
    import clamd

    config = scratch / "clamdscan.conf"
    # clamdscan sends at most its own StreamMaxLength (25 MB unless told): the whole file.
    config.write_text(
        f"TCPSocket {settings.scanner.port}\nTCPAddr 127.0.0.1\nStreamMaxLength 4000M\n"
    )
    scanner = ClamdScanner("127.0.0.1", settings.scanner.port, 120)

    def stock_clamd_package() -> None:
        with source.open("rb") as stream:
            clamd.ClamdNetworkSocket("127.0.0.1", settings.scanner.port, 120).instream(stream)

    return {
        "clamdscan --stream (C)": best_of(
            3,
            lambda: subprocess.run(
                ["clamdscan", "--no-summary", "--stream", f"--config-file={config}", str(source)],
                check=True,
                capture_output=True,
            ),
        ),
        "mediagate scanner": best_of(3, lambda: scanner.scan_file(source)),
        "clamd package as shipped (1 KiB sends)": best_of(3, stock_clamd_package),
    }


def ffmpeg_baseline(source: Path, content_type: str, scratch: Path) -> dict[str, float]:
    """The transcode command alone versus our whole video step (probes and poster too)."""
    from mediagate.processing.video import VideoBudget, output_size, sanitize_video

    found = probe(source, content_type)
    size = output_size(found.width, found.height, 1080)
    raw_command = _convert_command(
        source, content_type, scratch / "raw.mp4", found, remux=False, size=size
    )
    raw = best_of(1, lambda: subprocess.run(raw_command, check=True, capture_output=True))
    budget = VideoBudget(600, 5, 14400, 1080)
    ours = best_of(
        1,
        lambda: sanitize_video(
            source, content_type, scratch / "ours.mp4", scratch / "p.jpg", budget
        ),
    )
    return {"raw ffmpeg command": raw, "mediagate video step": ours}


# ---------------------------------------------------------------- throughput


@dataclass(frozen=True)
class Contender:
    """A worker to measure: this checkout's, or an earlier one's (`--baseline`) with the
    clamd settings that checkout shipped."""

    name: str
    python: str
    env: dict[str, str]


def start_worker(contender: Contender) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [contender.python, "-m", "mediagate.cli", "worker"],
        env={**os.environ, **contender.env},
        stderr=subprocess.DEVNULL,
    )


async def throughput(
    contender: Contender, settings: Settings, files: list[tuple[Path, str]], workers: int
) -> float:
    keys_ = await stage(settings, files)
    processes = [start_worker(contender) for _ in range(workers)]
    engine = db_engine.bind_engine(settings)
    await db_engine.start_pool(engine, 4)
    publisher = await JobPublisher.connect(load_settings(contender.env))
    try:
        own = load_settings(contender.env)
        await wait_until(lambda: consumers_at_least(own, workers), "no workers", 60)
        started = time.perf_counter()
        for key in keys_:
            record = await repo.find_by_key(key)
            assert record is not None
            await publisher.publish(ProcessJob(record.id, key, record.session_id))
        for key in keys_:
            await wait_for_status(key, MediaStatus.COMPLETED, timeout=600)
        elapsed = time.perf_counter() - started
    finally:
        await publisher.close()
        await engine.close_connection_pool()
        for process in processes:
            process.terminate()
            process.wait(timeout=60)
    return len(keys_) / elapsed * 60


# ---------------------------------------------------------------- report


def report_throughput(
    contenders: list[Contender], settings: Settings, photo_path: Path, batch: int, scratch: Path
) -> None:
    """Each figure for every contender in turn, so that they share the machine's moods."""
    for workers in (1, 2):
        rates = {}
        for contender in contenders:
            photos = [(p, "image/jpeg") for p in distinct_copies(photo_path, batch, scratch)]
            rates[contender.name] = asyncio.run(throughput(contender, settings, photos, workers))
        print(
            f"\nthroughput, {batch} distinct 12 MP JPEGs, {workers} worker(s): "
            + ", ".join(f"{name} {rate:.0f}/min" for name, rate in rates.items())
            + _ratio(rates)
        )
    for burst, count in ((False, 12), (True, 50)):
        how = f"a burst of {count}" if burst else f"{count} one at a time"
        medians = {}
        for contender in contenders:
            photos = [(p, "image/jpeg") for p in distinct_copies(photo_path, count, scratch)]
            seconds = sorted(asyncio.run(latency(contender, settings, photos, burst=burst)))
            p50, p95 = seconds[len(seconds) // 2], seconds[int(len(seconds) * 0.95) - 1]
            medians[contender.name] = p50
            print(
                f"\nconfirm -> COMPLETED, 12 MP JPEGs, {how}, 1 worker, {contender.name}: "
                f"p50 {p50:.3f} s, p95 {p95:.3f} s"
            )
        if len(medians) > 1:
            print(f"  p50{_ratio(medians)}")


def _with_webhooks(contender: Contender) -> Contender:
    """The same worker with WEBHOOK_URL set: every outcome becomes an event it delivers
    to a receiver here (each worker sets or removes the endpoint as it starts)."""

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hooks = {
        "WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/hook",
        "WEBHOOK_SECRET": new_secret(),
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    }
    return Contender("webhooks on", contender.python, {**contender.env, **hooks})


def _ratio(figures: dict[str, float]) -> str:
    if len(figures) < 2:
        return ""
    (ours, new), (_, old) = figures.items()
    return f"  ({ours} / baseline = {new / old:.2f}x)"


async def latency(
    contender: Contender, settings: Settings, files: list[tuple[Path, str]], *, burst: bool
) -> list[float]:
    """Seconds from each job's publication (what confirmUpload does) to its COMPLETED
    commit, by the worker's own timestamp: the polling here adds nothing to it."""
    keys_ = await stage(settings, files)
    worker = start_worker(contender)
    engine = db_engine.bind_engine(settings)
    await db_engine.start_pool(engine, 4)
    publisher = await JobPublisher.connect(load_settings(contender.env))
    published: dict[str, datetime] = {}

    async def publish(key: str) -> None:
        record = await repo.find_by_key(key)
        assert record is not None
        published[key] = datetime.now(UTC)
        await publisher.publish(ProcessJob(record.id, key, record.session_id))

    try:
        own = load_settings(contender.env)
        await wait_until(lambda: consumers_at_least(own, 1), "no worker", 60)
        for key in keys_:
            await publish(key)
            if not burst:
                await wait_for_status(key, MediaStatus.COMPLETED, timeout=600)
        done = [await wait_for_status(key, MediaStatus.COMPLETED, timeout=600) for key in keys_]
    finally:
        await publisher.close()
        await engine.close_connection_pool()
        worker.terminate()
        worker.wait(timeout=60)
    return [
        (record.processed_at - published[record.file_key]).total_seconds()
        for record in done
        if record.processed_at is not None
    ]


QUEUE_TYPES = ("quorum", "classic")


def _with_queue_type(contender: Contender, kind: str) -> Contender:
    """The same worker on queues of `kind` (names of their own: a queue keeps its type)."""
    queue = f"{contender.env['MEDIA_QUEUE']}.{kind}"
    env = {**contender.env, "QUEUE_TYPE": kind, "MEDIA_QUEUE": queue}
    return dataclasses.replace(contender, name=f"{kind} queues", env=env)


def main() -> None:  # noqa: PLR0915 - the whole run, as its report reads, step by step
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=40, help="12 MP JPEGs per throughput run")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also measure throughput and latency with an earlier checkout's worker (its own "
        ".venv) and clamd.conf, alternating with this one's",
    )
    parser.add_argument(
        "--webhooks",
        action="store_true",
        help="throughput and latency with every outcome sent as a webhook (to a receiver on "
        "loopback), alternating with none: the cost of the outbox and its delivery",
    )
    parser.add_argument(
        "--queue-types",
        action="store_true",
        help="throughput and latency with quorum queues and with classic ones, alternating",
    )
    parser.add_argument(
        "--throughput-only",
        action="store_true",
        help="throughput and latency only: skip the per-file and baseline parts",
    )
    args = parser.parse_args()
    # The S3 test server logs every request: not in the way of the tables.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    for tool in ("vips", "clamdscan", "clamd", "ffmpeg"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} is needed (apt-get install libvips-tools clamdscan clamav-daemon ffmpeg)"
            )

    database_url = asyncio.run(daemons.create_database())
    with daemons.s3_server() as s3, tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        env = make_env(database_url, s3, VIDEO_TIME_LIMIT="900", WORKER_PREFETCH="2")
        settings = load_settings(env)
        clamd_daemon = daemons.Clamd(scratch, settings.scanner.port)
        clamd_daemon.start()
        contenders = [Contender("this checkout", sys.executable, env)]
        baseline_clamd = None
        try:
            if args.baseline is not None:
                baseline_clamd = daemons.Clamd(
                    scratch, config=args.baseline / "deploy" / "clamav" / "clamd.conf"
                )
                baseline_clamd.start()
                contenders.append(
                    Contender(
                        "baseline",
                        str(args.baseline / ".venv" / "bin" / "python"),
                        {**env, "CLAMAV_PORT": str(baseline_clamd.port)},
                    )
                )
            subprocess.run(
                [sys.executable, "-m", "mediagate.cli", "migrate"],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
            )
            setup_storage(settings, bucket_events=False, require_tls=False)
            if args.webhooks:
                off = dataclasses.replace(contenders[0], name="webhooks off")
                contenders = [_with_webhooks(contenders[0]), off, *contenders[1:]]
            if args.queue_types:
                contenders = [_with_queue_type(contenders[0], kind) for kind in QUEUE_TYPES]
            if args.throughput_only or args.webhooks or args.queue_types:
                twelve = photo(scratch / "12mp.jpg", (4000, 3000))
                report_throughput(contenders, settings, twelve, args.batch, scratch)
                return
            print("making inputs ...", flush=True)
            files = inputs(scratch)
            staged = asyncio.run(stage(settings, list(files.values())))
            warm_up = scratch / "warm-up.jpg"
            warm_up.write_bytes(media.image_bytes("JPEG", (640, 480)))
            warm_ups = asyncio.run(stage(settings, [(warm_up, "image/jpeg")] * len(staged)))
            print("\nper file, whole pipeline in a fresh worker process (seconds)")
            header = f"{'file':<36}{'MB':>6}{'download':>9}{'scan':>7}{'process':>8}{'upload':>7}"
            print(
                header
                + f"{'db':>6}{'delete':>7}{'total':>7}{'other%':>7}{'RSS MiB':>8}{'decoder':>8}"
            )
            for (name, (path, _type)), key, warm_key in zip(
                files.items(), staged, warm_ups, strict=True
            ):
                result = run_child(env, warm_key, key)
                t = result["timings"]
                core = t["scan"] + t["process"]
                other = 100 * (result["wall"] - core) / result["wall"]
                stages = "".join(
                    f"{t[stage]:>{width}.3f}"
                    for stage, width in (
                        ("download", 9),
                        ("scan", 7),
                        ("process", 8),
                        ("upload", 7),
                        ("database", 6),
                        ("delete_original", 7),
                    )
                )
                print(
                    f"{name:<36}{path.stat().st_size / 1e6:>6.1f}{stages}"
                    f"{result['wall']:>7.2f}{other:>7.1f}"
                    f"{result['rss_mib']:>8.0f}{result['decoder_rss_mib']:>8.0f}"
                )

            for name in ("jpeg 12 MP", "jpeg 24 MP"):
                base = image_baselines(files[name][0], scratch)
                ratio = base["mediagate (decoder process)"] / base["pyvips"]
                print(
                    f"\nimage stage, {name}: "
                    + ", ".join(f"{k} {v:.3f} s" for k, v in base.items())
                )
                print(f"  mediagate / pyvips = {ratio:.2f}x")

            scan_input = files["video 30 s 1080p h264 (remux)"][0]
            size_mb = scan_input.stat().st_size / 1e6
            scans = scan_baselines(scan_input, settings, scratch)
            print(
                f"\nscan of {size_mb:.1f} MB: "
                + ", ".join(f"{k} {size_mb / v:.0f} MB/s" for k, v in scans.items())
            )
            share = scans["clamdscan --stream (C)"] / scans["mediagate scanner"]
            print(f"  mediagate at {100 * share:.0f}% of raw INSTREAM throughput")

            transcode = ffmpeg_baseline(*files["video 30 s 1080p mpeg4 (transcode)"], scratch)
            ratio = transcode["mediagate video step"] / transcode["raw ffmpeg command"]
            print(
                "\ntranscode 30 s 1080p: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in transcode.items())
            )
            print(f"  mediagate / raw = {ratio:.3f}x")

            report_throughput(contenders, settings, files["jpeg 12 MP"][0], args.batch, scratch)
        finally:
            clamd_daemon.stop()
            if baseline_clamd is not None:
                baseline_clamd.stop()
            asyncio.run(daemons.drop_database(database_url))


if __name__ == "__main__":
    main()
