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
