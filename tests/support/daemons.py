"""Start and stop the real services the tests talk to, all on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import clamd
import httpx

# Without this, the S3 test server answers every CORS preflight with "allow all", unlike
# any real store: the bucket's own CORS rules decide (read when moto is imported).
os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[2]
CLAMD_CONF = ROOT / "deploy" / "clamav" / "clamd.conf"
TEST_SIGNATURES = ROOT / "deploy" / "clamav" / "test-signatures"
# scripts/test exports both; the defaults suit a machine with trust authentication.
POSTGRES_ADMIN_URL = os.environ.get(
    "POSTGRES_ADMIN_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server: a real HTTP S3 API on loopback (it does not check signatures)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def create_database() -> str:
    name = f"mediagate_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class Clamd:
    """A clamd process started from the shipped clamd.conf with the test signature database."""

    def __init__(
        self, workdir: Path, port: int | None = None, config: Path = CLAMD_CONF, **settings: str
    ) -> None:
        self.port = port or free_port()
        self._shipped_config = config
        self._settings = settings
        self._config = workdir / f"clamd-{self.port}.conf"
        self._process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        overrides = {
            "TCPSocket": str(self.port),
            "TCPAddr": "127.0.0.1",
            "DatabaseDirectory": str(TEST_SIGNATURES),
            "Foreground": "yes",
            **self._settings,
        }
        kept = [
            line
            for line in self._shipped_config.read_text().splitlines()
            if line.split(" ", 1)[0]
            not in {*overrides, "LocalSocket", "LogFile", "PidFile", "User"}
        ]
        kept += [f"{name} {value}" for name, value in overrides.items()]
        self._config.write_text("\n".join(kept) + "\n")

    def start(self, timeout: float = 60.0) -> None:
        self._write_config()
        self._process = subprocess.Popen(
            ["clamd", "--config-file", str(self._config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until_up(self._process, self.answers, "clamd did not answer PING", timeout, 0.05)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def answers(self) -> bool:
        try:
            return bool(
                clamd.ClamdNetworkSocket("127.0.0.1", self.port, timeout=1).ping() == "PONG"
            )
        except (clamd.ConnectionError, OSError):
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)
            self._process = None


def run_cli(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`mediagate ARGS` as a process on `env`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "mediagate.cli", *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


@contextmanager
def serve_api(
    env: dict[str, str], *options: str, log: Path | None = None, port: int | None = None
) -> Iterator[ServedApi]:
    """`mediagate serve` as a process on `port` (a free one by default), until the block
    ends; its log goes to `log` when given."""
    port = port or free_port()
    with ExitStack() as files:
        stderr = None if log is None else files.enter_context(log.open("ab"))
        process = subprocess.Popen(
            [sys.executable, "-m", "mediagate.cli", "serve", "--port", str(port), *options],
            env={"PATH": os.environ["PATH"], **env},
            stderr=stderr,
        )
    served = ServedApi(f"http://127.0.0.1:{port}", process.pid)
    try:
        deadline = time.monotonic() + 30
        while not served.ready():
            assert process.poll() is None, "mediagate serve exited"
            assert time.monotonic() < deadline, "mediagate serve never became ready"
            time.sleep(0.1)
        yield served
    finally:
        # The supervisor stops its processes; a failed start or test must not leave them.
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see it.
        assert process.wait(timeout=30) in (0, -15)


@dataclass(frozen=True)
class ServedApi:
    url: str
    pid: int

    def ready(self) -> bool:
        """Every serving process listens, and the service answers ready."""
        if self.listening_sockets() < self.serving_processes():
            return False
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def listening_sockets(self) -> int:
        """Sockets in LISTEN state on the server's port, whoever holds them."""
        port = f":{int(self.url.rsplit(':', 1)[1]):04X}"
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        return sum(row.split()[1].endswith(port) and row.split()[3] == "0A" for row in rows)

    def serving_processes(self) -> int:
        """The server itself, or the processes its supervisor started to serve."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children]
        return sum(b"spawn_main" in command for command in commands) or 1


class RabbitNode:
    """A RabbitMQ node of our own (Debian's rabbitmq-server) on a free port, for broker
    settings the shared one must not get: a consumer timeout of seconds instead of 30
    minutes, checked every half second instead of every minute."""

    def __init__(self, workdir: Path, consumer_timeout_ms: int) -> None:
        self.port = free_port()
        self.name = f"mediagate-test-{self.port}@localhost"
        self._workdir = workdir
        self._timeout = consumer_timeout_ms
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        base = self._workdir
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(base),  # its Erlang cookie lives here, apart from the shared node's
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        }

    @staticmethod
    def server_script() -> Path | None:
        """The server's own script (rabbitmqctl is beside it): the packaged wrappers switch
        to the rabbitmq user, whose Erlang cookie is not this node's."""
        found = sorted(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin/rabbitmq-server"))
        return found[-1] if found else None

    def start(self, timeout: float = 60.0) -> None:
        script = self.server_script()
        assert script is not None, "rabbitmq-server is not installed"
        (self._workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nconsumer_timeout = {self._timeout}\n"
        )
        (self._workdir / "advanced.config").write_text(
            "[{rabbit, [{channel_tick_interval, 500}]}].\n"
        )
        (self._workdir / "enabled_plugins").write_text("[].\n")
        self._process = subprocess.Popen(
            [str(script)], env=self._env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_until_up(
            self._process, self._accepts, "the RabbitMQ node did not open its port", timeout, 0.2
        )

    def _accepts(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def ctl(self, *arguments: str) -> str:
        """rabbitmqctl against this node."""
        script = self.server_script()
        assert script is not None
        done = subprocess.run(
            [str(script.with_name("rabbitmqctl")), "-q", "-n", self.name, *arguments],
            env=self._env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None


def _wait_until_up(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    never: str,
    timeout: float,
    interval: float,
) -> None:
    """Until `ready()`: fails at once if the daemon exits, with `never` at the deadline."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(never)
        time.sleep(interval)
