"""Per-job scratch directories, each labelled with the process that owns it.

A killed worker leaves its directory behind, an unscanned original inside. The next
worker start on the same host removes every directory whose owner process is gone,
whatever its age; directories of other hosts (a shared volume) only once they are
older than any job can run.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCRATCH_PREFIX = "mediagate-"
OWNER_FILE = ".owner"


def _start_ticks(pid: int) -> str | None:
    """When the process started (clock ticks since boot): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it are plain.
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_label(pid: int) -> str:
    return f"{socket.gethostname()} {pid} {_start_ticks(pid)}"


@contextmanager
def job_scratch(root: Path | None) -> Iterator[Path]:
    """A fresh directory for one job, removed when the job ends."""
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=root) as directory:
        path = Path(directory)
        (path / OWNER_FILE).write_text(_owner_label(os.getpid()))
        yield path


def _abandoned(path: Path, cutoff: float) -> bool:
    try:
        host, pid, started = (path / OWNER_FILE).read_text().split()
    except (OSError, ValueError):
        return path.stat().st_mtime < cutoff  # unlabelled: only age can tell
    if host != socket.gethostname():
        return path.stat().st_mtime < cutoff
    return _owner_label(int(pid)) != f"{host} {pid} {started}"


def remove_abandoned_scratch(root: Path | None, older_than_seconds: float) -> int:
    """Delete the scratch directories of jobs whose process is gone; returns how many."""
    base = Path(root or tempfile.gettempdir())
    cutoff = time.time() - older_than_seconds
    abandoned = [
        path
        for path in base.glob(f"{SCRATCH_PREFIX}*")
        if path.is_dir() and _abandoned(path, cutoff)
    ]
    for path in abandoned:
        shutil.rmtree(path, ignore_errors=True)
    return len(abandoned)
