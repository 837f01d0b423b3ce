"""Child process of worker_bench.py: what one worker process spends on one file.

Imports what `mediagate worker` imports and nothing more, so its peak RSS is the
worker's; the decoder child (and the ffmpeg runs it starts) is reported apart.
Processes a small warm-up upload first (cold imports and first connections are not
part of a file's cost), then the file; prints timings and peak memory as JSON.
Settings come from the environment, as for the worker.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

from mediagate.config import load_settings
from mediagate.db import engine as db_engine
from mediagate.processing.images import reuse_image_memory
from mediagate.processing.isolation import DecoderPool
from mediagate.scanning.clamav import ClamdScanner
from mediagate.storage.object_store import ObjectStore
from mediagate.worker import runner  # the worker's own imports, for a fair RSS
from mediagate.worker.pipeline import MediaPipeline
from mediagate.worker.retries import Done


async def process(warm_up_key: str, key: str) -> dict[str, Any]:
    settings = load_settings()
    runner.keep_large_buffers_off_the_heap()  # as `mediagate worker` does
    engine = db_engine.bind_engine(settings)
    await db_engine.start_pool(engine, 4)
    decoders = DecoderPool(1, initializer=reuse_image_memory)  # as `mediagate worker` does
    try:
        scanner = ClamdScanner(
            settings.scanner.host, settings.scanner.port, settings.scanner.timeout
        )
        pipeline = MediaPipeline(settings, ObjectStore(settings), scanner, decoders)
        await pipeline.handle(warm_up_key, 0)
        started = time.perf_counter()
        outcome = await pipeline.handle(key, 0)
        wall = time.perf_counter() - started
    finally:
        decoders.close()  # waits for the decoder: its peak joins RUSAGE_CHILDREN
        await engine.close_connection_pool()
    assert isinstance(outcome, Done) and outcome.note == "completed", outcome
    return {"wall": wall, "timings": outcome.timings}


def main() -> None:
    result = asyncio.run(process(sys.argv[1], sys.argv[2]))
    status = Path("/proc/self/status").read_text()
    peak_kib = re.search(r"VmHWM:\s+(\d+)", status)
    assert peak_kib is not None
    result["rss_mib"] = int(peak_kib.group(1)) / 1024
    # The largest of the decoder process and the ffmpeg runs it waited for.
    result["decoder_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
