"""A PostgreSQL server of the test's own (initdb and pg_ctl in a temp directory, on a
port of its own), to stop and start while the system runs: the machine's server is left
alone. The server refuses to run as root, so as root it runs as `postgres`."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.daemons import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PrivatePostgres:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/mediagate"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_server_user(), str(BIN / "pg_ctl"), "-D", str(self.root / "data"), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._ctl("start", "-w", "-l", str(self.root / "server.log"), "-o", options)

    def stop(self) -> None:
        self._ctl("stop", "-w", "-m", "fast")


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="mediagate-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    server = PrivatePostgres(root, free_port())
    try:
        data = str(root / "data")
        subprocess.run(
            [*_as_server_user(), str(BIN / "initdb"), "-D", data, "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        server.start()
        where = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
        subprocess.run(
            [*_as_server_user(), str(BIN / "createdb"), *where, "mediagate"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
