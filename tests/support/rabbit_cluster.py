"""A three-node RabbitMQ cluster beside the machine's own broker, for the fault tests.

Each node has its own directory (config, database, logs, pid file, an empty plugin
list) and they share one Erlang cookie. The server is started from its own directory
of scripts: Debian's wrapper in /usr/sbin switches to the rabbitmq user, who cannot
write these files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.daemons import free_port

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
COOKIE = "mediagate-test-cluster-cookie"
START_SECONDS = 120.0


@dataclass
class Node:
    name: str
    port: int
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.home / "log"),
            "RABBITMQ_PID_FILE": str(self.home / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
        }

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def start(self) -> None:
        env = {**self.env, "RABBITMQ_DIST_PORT": str(free_port())}
        log = (self.home / "server.out").open("ab")
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def await_startup(self) -> None:
        """`await_startup` fails at once until the node has registered: ask again."""
        deadline = time.monotonic() + START_SECONDS
        while self.ctl("await_startup", "--timeout", "30", check=False).returncode != 0:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.home / 'server.out'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not start")
            time.sleep(0.5)  # polling a process that gives no other signal

    def pid(self) -> int:
        """The node's own process (the server script's Erlang VM), from its pid file."""
        return int((self.home / "rabbit.pid").read_text().strip())

    def kill(self) -> None:
        """SIGKILL, as a machine that dies."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid(), signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the node and everything it started if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@dataclass
class Cluster:
    nodes: list[Node]

    @property
    def amqp_url(self) -> str:
        """Every node, in order: what AMQP_URL takes for a cluster."""
        return ",".join(node.url for node in self.nodes)

    def by_name(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def queue_leader(self, queue: str) -> Node:
        """The node that leads a quorum queue now (asked of a node that is running)."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            listed = node.ctl("list_queues", "-q", "--no-table-headers", "name", "leader")
            for line in listed.stdout.splitlines():
                name, _, leader = line.partition("\t")
                if name == queue:
                    return self.by_name(leader.strip())
        raise LookupError(queue)


def _prepare(home: Path, port: int) -> None:
    (home / "mnesia").mkdir(parents=True)
    (home / "log").mkdir()
    (home / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"
    )
    (home / "enabled_plugins").write_text("[].\n")
    cookie = home / ".erlang.cookie"
    cookie.write_text(COOKIE)
    cookie.chmod(0o400)


@contextlib.contextmanager
def rabbit_cluster(root: Path, size: int = 3) -> Iterator[Cluster]:
    tag = os.urandom(3).hex()
    nodes = [
        Node(f"mgt{index}x{tag}@localhost", free_port(), root / f"node{index}")
        for index in range(1, size + 1)
    ]
    try:
        for node in nodes:
            _prepare(node.home, node.port)
            node.start()
        for node in nodes:
            node.await_startup()
        first = nodes[0]
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
            node.await_startup()
        yield Cluster(nodes)
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):  # every node is stopped, whatever one does
                node.stop()
