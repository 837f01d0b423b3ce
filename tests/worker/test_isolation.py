"""Decoders in child processes: wall-clock, CPU and memory limits, and kills that reach
every process the decoder started."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mediagate.processing.errors import ScratchUnavailable, UnacceptableMedia
from mediagate.processing.images import sanitize_image
from mediagate.processing.isolation import Decoder, DecoderPool, DecodeTimeout, Limits
from tests.support import media

GIB = 1024**3
ROOMY = Limits(wall_seconds=120, cpu_seconds=120, memory_bytes=2 * GIB)


def spin() -> None:
    while True:
        pass


def allocate(size: int) -> int:
    return len(bytearray(size))


def start_and_wait(pid_file: Path) -> None:
    """Like a decoder running ffmpeg: a grandchild process that outlives nothing."""
    child = subprocess.Popen(["sleep", "600"])
    pid_file.write_text(str(child.pid))
    child.wait()


def top_level_modules() -> set[str]:
    return {name.split(".")[0] for name in sys.modules}


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # a zombie has already exited


@pytest.fixture
def decoder() -> Decoder:
    return Decoder()


def test_a_call_past_the_wall_clock_limit_is_killed(decoder: Decoder) -> None:
    with pytest.raises(DecodeTimeout, match="the image takes too long to decode"):
        decoder.call(spin, (), Limits(1, 120, 2 * GIB, "the image"))
    # The next call gets a fresh child.
    assert decoder.call(allocate, (10,), ROOMY) == 10
    decoder.close()


def test_a_call_past_the_cpu_limit_is_killed(decoder: Decoder) -> None:
    with pytest.raises(DecodeTimeout, match="takes too long"):
        decoder.call(spin, (), Limits(wall_seconds=600, cpu_seconds=1, memory_bytes=2 * GIB))
    assert decoder.call(allocate, (10,), ROOMY) == 10
    decoder.close()


def test_a_call_past_the_memory_limit_is_refused(decoder: Decoder) -> None:
    limits = Limits(wall_seconds=120, cpu_seconds=120, memory_bytes=GIB // 2, what="the image")
    with pytest.raises(UnacceptableMedia, match="needs more memory than allowed"):
        decoder.call(allocate, (GIB,), limits)
    # The limit was for that call only.
    assert decoder.call(allocate, (GIB,), ROOMY) == GIB
    decoder.close()


def test_a_scratch_failure_reaches_the_worker_as_such(decoder: Decoder, tmp_path: Path) -> None:
    """Not UnacceptableMedia (the upload would be rejected) nor a crash (retried a few
    times, then dead-lettered): the worker retries it until the disk is fixed."""
    source = tmp_path / "photo.jpg"
    source.write_bytes(media.fixture("landscape_1.jpg"))
    unwritable = tmp_path / "removed-scratch" / "processed"
    with pytest.raises(ScratchUnavailable, match="processed copy could not be written"):
        decoder.call(sanitize_image, (source, "image/jpeg", unwritable), ROOMY)
    assert decoder.call(allocate, (10,), ROOMY) == 10
    decoder.close()


WORKER_LIKE_MAIN = """
import json
import asyncpg, aio_pika, minio  # what the worker's own modules import
from mediagate.processing.isolation import Decoder
from tests.worker.test_isolation import ROOMY, top_level_modules
if __name__ == "__main__":
    decoder = Decoder()
    print(json.dumps(sorted(decoder.call(top_level_modules, (), ROOMY))))
    decoder.close()
"""


def test_the_decoder_loads_none_of_its_parents_modules(tmp_path: Path) -> None:
    # Memory per job slot: a copy of the worker's modules would be tens of MiB.
    main = tmp_path / "worker_like.py"
    main.write_text(WORKER_LIKE_MAIN)
    root = Path(__file__).resolve().parents[2]
    output = subprocess.run(
        [sys.executable, str(main)],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    loaded = set(json.loads(output))
    assert "mediagate" in loaded
    assert not loaded & {"asyncpg", "aio_pika", "minio"}


def test_a_kill_reaches_the_processes_the_decoder_started(decoder: Decoder, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(DecodeTimeout):
        decoder.call(start_and_wait, (pid_file,), Limits(2, 120, 2 * GIB))
    assert _gone(int(pid_file.read_text()))
    decoder.close()


async def test_a_cancelled_call_kills_its_decoder_and_the_pool_recovers(tmp_path: Path) -> None:
    pool = DecoderPool(1)
    pid_file = tmp_path / "pid"
    call = asyncio.create_task(pool.call(start_and_wait, (pid_file,), ROOMY))
    while not pid_file.exists() or not pid_file.read_text():
        await asyncio.sleep(0.05)  # polling for the child's own report, not a delay
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert _gone(int(pid_file.read_text()))
    assert await pool.call(os.getpid, (), ROOMY) != os.getpid()
    pool.close()
