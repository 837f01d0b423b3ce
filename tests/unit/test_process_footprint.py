"""What the long-running processes load: every module is resident memory, per process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Piccolo's migration runner brings a code formatter (black), about 8 MiB: only
# `mediagate migrate` needs it.
MIGRATION_ONLY = {"black", "piccolo.apps.migrations.commands.forwards"}


@pytest.mark.parametrize("entry", ["mediagate.worker.runner", "mediagate.api.app"])
def test_the_api_and_the_worker_leave_the_migration_machinery_out(entry: str) -> None:
    code = f"import json, sys, {entry}; print(json.dumps(sorted(sys.modules)))"
    loaded = set(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
    )
    assert entry in loaded
    assert not loaded & MIGRATION_ONLY


# Three threads, each holding up to four 5 MiB buffers at a time (the SDK's upload parts),
# 300 buffers each: live at most 60 MiB.
_CHURN = """
import re, threading
from pathlib import Path
from mediagate.worker.runner import keep_large_buffers_off_the_heap

def peak():
    return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))

def churn():
    held = []
    for i in range(300):
        held.append(b"x" * (5 * 1024 * 1024 + i))
        if len(held) > 4:
            held.pop(0)
        transient = [bytearray(1000) for _ in range(50)]

keep_large_buffers_off_the_heap()
before = peak()
threads = [threading.Thread(target=churn) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print((peak() - before) // 1024)
"""


def test_the_worker_keeps_transfer_buffers_off_the_heap() -> None:
    """A heap carved by large buffers fragments and keeps growing (glibc raises its mmap
    threshold as they are freed); the worker's peak stays what it holds at once."""
    grown_mib = int(
        subprocess.run(
            [sys.executable, "-c", _CHURN], capture_output=True, text=True, check=True
        ).stdout
    )
    live_mib = 3 * 5 * 5  # up to five buffers per thread exist at once while a sixth is made
    assert grown_mib <= live_mib * 1.1, grown_mib
