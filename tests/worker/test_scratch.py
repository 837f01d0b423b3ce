"""Scratch directories of killed jobs are removed at the next start, whatever their age."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mediagate.worker.scratch import OWNER_FILE, job_scratch, remove_abandoned_scratch

HOLD_A_SCRATCH_DIRECTORY = """
import sys, time
from pathlib import Path
from mediagate.worker.scratch import job_scratch
with job_scratch(Path(sys.argv[1])) as scratch:
    (scratch / "original").write_bytes(b"unscanned")
    print(scratch, flush=True)
    sys.stdin.read()
"""


def test_a_killed_jobs_directory_goes_at_once_and_live_ones_stay(tmp_path: Path) -> None:
    job = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_SCRATCH_DIRECTORY, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert job.stdout is not None
    killed = Path(job.stdout.readline().strip())
    job.kill()
    job.wait()
    assert (killed / "original").exists(), "a killed job cannot clean up after itself"

    with job_scratch(tmp_path) as live:
        # Minutes old at most, far younger than the age limit: the owner decides.
        assert remove_abandoned_scratch(tmp_path, older_than_seconds=3600) == 1
        assert not killed.exists() and live.exists()


def test_directories_of_other_hosts_go_only_when_old(tmp_path: Path) -> None:
    young, old, unlabelled = (tmp_path / f"mediagate-{name}" for name in ("y", "o", "u"))
    for directory in (young, old, unlabelled):
        directory.mkdir()
    for directory in (young, old):
        (directory / OWNER_FILE).write_text(f"another-host {os.getpid()} 1")
    hour_ago = time.time() - 3600
    for directory in (old, unlabelled):
        os.utime(directory, (hour_ago, hour_ago))
    (tmp_path / "not-ours").mkdir()
    assert remove_abandoned_scratch(tmp_path, older_than_seconds=1800) == 2
    assert young.exists() and not old.exists() and not unlabelled.exists()
    assert (tmp_path / "not-ours").exists()
