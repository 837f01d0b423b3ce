"""A webhook receiver on loopback: a real HTTP server in a thread that records what it
is sent and answers as the test scripts it (status, headers, a body, or no answer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Hold the request this long before answering (a receiver that is slow, or hangs).
    hold: float = 0.0


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        self._lock = threading.Lock()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                reply = receiver._next(self.path, dict(self.headers.items()), body)
                if reply.hold:
                    receiver.release.wait(reply.hold)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def _next(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            lowered = {name.lower(): value for name, value in headers.items()}
            self.received.append(Received(path, lowered, body, time.monotonic()))
            return self.script.pop(0) if self.script else self.default

    def of_event(self, event_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.headers.get("webhook-id") == event_id]

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)


@contextmanager
def receiving(port: int = 0) -> Iterator[Receiver]:
    """A receiver listening until the block ends (on `port`, else a free one)."""
    receiver = Receiver(port)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()
