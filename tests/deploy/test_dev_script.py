"""`just dev` (scripts/dev) on this machine: it sets everything up and a photo goes through."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support import daemons

ROOT = Path(__file__).resolve().parents[2]


# Ceph RGW by default; the in-memory test server when asked for.
@pytest.mark.parametrize(
    ("flags", "store"), [([], "rgw"), (["--store", "s3-test-server"], "s3-test-server")]
)
async def test_dev_script_runs_the_system_and_one_upload_completes(
    flags: list[str], store: str
) -> None:
    database = f"mediagate_devtest_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DEV_DATABASE": database,
        "DEV_API_PORT": str(daemons.free_port()),
        "DEV_S3_PORT": str(daemons.free_port()),
        "DEV_CLAMAV_PORT": str(daemons.free_port()),
        "S3_BUCKET": f"dev-{uuid.uuid4().hex[:8]}",
    }
    try:
        result = subprocess.run(
            [str(ROOT / "scripts" / "dev"), *flags, "--smoke"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        await daemons.drop_database(daemons.POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}")
        (ROOT / ".run" / f"session-{database}").unlink(missing_ok=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "session " in result.stdout and "curl -s" in result.stdout
    assert "/demo#token=" in result.stdout and "&session=" in result.stdout
    assert f"({store})" in result.stdout
    assert "smoke: COMPLETED 600x450" in result.stdout
    assert "clean=True" in result.stdout
    assert "demo page 200, browser client 200" in result.stdout
