"""`mediagate serve`: uvicorn with the limits a public HTTP server needs.

uvicorn bounds idle keep-alive connections but not a client that sends its headers
slowly or without end (it keeps every header it is sent), nor how many connections one
process holds. These are added here, on uvicorn's own protocol class: a header deadline
per request (from the connection's first byte, or the previous response, to the end of
the headers), a cap on the bytes before the end of the headers (answered with uvicorn's
own 400), and a connection cap above which new connections are closed at once. The body
deadline and size are the ASGI handler's.

WebSocket connections (GraphQL subscriptions) have a cap of their own, so that open
subscriptions never crowd out HTTP requests; their messages are limited to the size of
an HTTP body, and compression is off (it costs a zlib context, hundreds of KiB, per
connection, and inflating is what a decompression bomb exploits).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.supervisors import Multiprocess
from websockets.http11 import Request

from mediagate.config import Settings

# The same bound as an HTTP request body.
MAX_WEBSOCKET_MESSAGE_BYTES = 64 * 1024


class BoundedConfig(uvicorn.Config):
    """uvicorn's config plus our two limits; picklable, so worker processes get them."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        max_header_bytes: int,
        max_connections: int,
        max_websockets: int,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections
        self.max_websockets = max_websockets


# One uvicorn server per process: the WebSocket connections this process holds.
_open_websockets: set[asyncio.Protocol] = set()


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """Past the cap, the handshake is answered 503 before the app sees the connection."""

    config: BoundedConfig

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._refused = len(_open_websockets) >= self.config.max_websockets
        if not self._refused:
            _open_websockets.add(self)

    def handle_connect(self, event: Request) -> None:
        if not self._refused:
            super().handle_connect(event)
            return
        self.handshake_initiated = self.handshake_complete = self.close_sent = True
        self.conn.send_response(self.conn.reject(503, "Too many WebSocket connections\n"))
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        _open_websockets.discard(self)
        super().connection_lost(exc)

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close" and not self.writable.is_set():
            # The peer has stopped reading (the app drops slow consumers): a close frame
            # would wait behind what it never reads, holding the connection. Abort it.
            self.transport.abort()
            return
        await super().send(message)


_END_OF_HEADERS = b"\r\n\r\n"


class BoundedHttpProtocol(HttpToolsProtocol):
    config: BoundedConfig
    _header_deadline: asyncio.TimerHandle | None = None
    # Bytes of the request line and headers received so far (a body that arrives in the
    # same read as the end of the headers is not theirs), and the last bytes of the
    # previous read, where the end of the headers may have begun.
    _header_bytes = 0
    _header_tail = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) - len(_open_websockets) > self.config.max_connections:
            transport.abort()
            return
        self._start_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is not None:
            self._header_bytes += self._header_part(data)
            if self._header_bytes > self.config.max_header_bytes:
                self._cancel_header_deadline()
                self.send_400_response("Request headers too large.")
                return
        super().data_received(data)

    def _header_part(self, data: bytes) -> int:
        """How many bytes of `data` come before the end of the headers (through it)."""
        tail = self._header_tail
        window = tail + data
        end = window.find(_END_OF_HEADERS)
        self._header_tail = window[-3:]
        return len(data) if end < 0 else end + len(_END_OF_HEADERS) - len(tail)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _start_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_bytes = 0
            self._header_tail = b""
            self._header_deadline = self.loop.call_later(
                self.config.header_timeout, self.transport.close
            )

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run the API until SIGTERM; several processes share one socket when `workers` > 1."""
    from mediagate.api.app import create_app

    # Each extra process builds its own app (and reads its settings once) at start.
    app: Any = (
        "mediagate.api.asgi:create_app_from_environment" if workers > 1 else create_app(settings)
    )
    config = BoundedConfig(
        app,
        factory=workers > 1,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=BoundedHttpProtocol,
        ws=BoundedWebSocketProtocol,
        ws_max_size=MAX_WEBSOCKET_MESSAGE_BYTES,
        ws_per_message_deflate=False,
        access_log=False,
        timeout_keep_alive=int(settings.http.keepalive_timeout),
        header_timeout=settings.http.header_timeout,
        max_header_bytes=settings.http.max_header_bytes,
        max_connections=settings.http.max_connections,
        max_websockets=settings.websocket.max_connections,
    )
    if workers > 1:
        # A port in use stops the command at once, rather than each process in turn,
        # or worse, sharing it with another server that also set SO_REUSEPORT. Held
        # (bound, not listening, so it takes no connection) until the processes end.
        _port_socket(host, port, shared=False).close()
        claimed = _port_socket(host, port)
        try:
            Multiprocess(config, sockets=_SocketPerProcess(host, port)).run()
        finally:
            claimed.close()
    else:
        uvicorn.Server(config).run()


class _SocketPerProcess(list[socket.socket]):
    """Empty here; in each server process it arrives (unpickled) as a listening socket of
    that process's own, all on one port (SO_REUSEPORT), so that the kernel spreads new
    connections evenly. On one shared socket whichever process wakes first accepts: a
    client's 64 connections opened at once went 63 to one process and 1 to the other."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self._address = (host, port)

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return _own_sockets, self._address


def _own_sockets(host: str, port: int) -> list[socket.socket]:
    return [_port_socket(host, port)]


def _port_socket(host: str, port: int, *, shared: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock
