"""GraphQL over WebSocket: the graphql-transport-ws protocol, as graphql-ws specifies it.

uvicorn and the `websockets` library carry the WebSocket itself (framing, ping, size
limits); this module is the GraphQL protocol on top, on raw ASGI messages. The client
authenticates in `connection_init` ({"authorization": "Bearer …"}); the connection is
closed with 4403 when the token expires. Bounds: the time to `connection_init`, the
operations per connection, and each subscription's queue (see MediaFeed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, cast

import msgspec
from litestar.types import (
    Receive,
    Send,
    WebSocketAcceptEvent,
    WebSocketCloseEvent,
    WebSocketSendEvent,
)

from mediagate.api.context import RequestContext
from mediagate.api.graphql.errors import RequestError, client_error
from mediagate.api.graphql.executor import GraphQLExecutor, GraphQLRequest
from mediagate.auth.tokens import TokenVerifier
from mediagate.config import WebSocketSettings
from mediagate.errors import ClientError
from mediagate.services.live_updates import MediaFeed
from mediagate.services.uploads import UploadService
from mediagate.services.webhooks import WebhookService

log = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"


class CloseCode(IntEnum):
    """The protocol's close codes, and the standard one for a consumer that fell behind."""

    POLICY_VIOLATION = 1008
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    INIT_TIMEOUT = 4408
    SUBSCRIBER_EXISTS = 4409
    TOO_MANY_INIT_REQUESTS = 4429
    INTERNAL_ERROR = 4500


@dataclass(frozen=True, slots=True)
class SocketServices:
    executor: GraphQLExecutor
    uploads: UploadService
    webhooks: WebhookService
    verifier: TokenVerifier
    feed: MediaFeed
    limits: WebSocketSettings


class _Close(Exception):
    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Disconnected(Exception):
    """The client went away."""


def accepts_protocol(subprotocols: list[str]) -> bool:
    return PROTOCOL in subprotocols


class GraphQLWebSocket:
    """One connection, from the handshake to its close."""

    def __init__(
        self, services: SocketServices, subprotocols: list[str], receive: Receive, send: Send
    ) -> None:
        self._services = services
        self._subprotocols = subprotocols
        self._receive = receive
        self._send = send
        self._operations: dict[str, asyncio.Task[None]] = {}
        self._stopped: asyncio.Future[_Close | None] = asyncio.get_running_loop().create_future()
        self._context: RequestContext | None = None

    async def run(self) -> None:
        if (await self._receive())["type"] != "websocket.connect":
            return
        accepted = accepts_protocol(self._subprotocols)
        accept: WebSocketAcceptEvent = {
            "type": "websocket.accept",
            "subprotocol": PROTOCOL if accepted else None,
            "headers": [],
        }
        await self._send(accept)
        if not accepted:
            await self._close(CloseCode.SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
            return
        try:
            expires_at = await self._initialise()
            await self._send_message({"type": "connection_ack"})
            stop = await self._serve_until(expires_at)
        except _Close as close:
            stop = close
        except _Disconnected:
            stop = None
        finally:
            await self._stop_operations()
        if stop is not None:
            await self._close(stop.code, stop.reason)

    async def _initialise(self) -> float:
        """Wait for connection_init, authenticate it; returns when the token expires."""
        try:
            async with asyncio.timeout(self._services.limits.init_timeout):
                message = await self._next_message()
        except TimeoutError:
            raise _Close(CloseCode.INIT_TIMEOUT, "Connection initialisation timeout") from None
        if message["type"] != "connection_init":
            raise _Close(CloseCode.UNAUTHORIZED, "Unauthorized")
        payload = message.get("payload")
        authorization = payload.get("authorization") if isinstance(payload, dict) else None
        context = RequestContext(
            uploads=self._services.uploads,
            webhooks=self._services.webhooks,
            verifier=self._services.verifier,
            authorization=authorization if isinstance(authorization, str) else None,
            feed=self._services.feed,
            on_overflow=self._drop_slow_consumer,
        )
        try:
            _principal, expires_at = await self._services.verifier.verify_until(
                context.bearer_token()
            )
        except ClientError:
            raise _Close(CloseCode.FORBIDDEN, "Forbidden") from None
        self._context = context
        return expires_at

    async def _serve_until(self, expires_at: float) -> _Close | None:
        reader = asyncio.create_task(self._read_messages())
        try:
            done, _ = await asyncio.wait({self._stopped}, timeout=expires_at - time.time())
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if not done:
            return _Close(CloseCode.FORBIDDEN, "Forbidden: the token expired")
        return self._stopped.result()

    def _stop(self, close: _Close | None) -> None:
        if not self._stopped.done():
            self._stopped.set_result(close)

    def _drop_slow_consumer(self) -> None:
        log.warning("dropping a WebSocket subscriber that does not keep up")
        self._stop(_Close(CloseCode.POLICY_VIOLATION, "slow consumer: too many undelivered"))

    async def _read_messages(self) -> None:
        try:
            while True:
                await self._handle(await self._next_message())
        except _Close as close:
            self._stop(close)
        except _Disconnected:
            self._stop(None)

    async def _next_message(self) -> dict[str, Any]:
        event = await self._receive()
        if event["type"] == "websocket.disconnect":
            raise _Disconnected
        text = event.get("text")
        if text is None:
            raise _Close(CloseCode.BAD_REQUEST, "Invalid message received: not text")
        try:
            message = msgspec.json.decode(cast(str | bytes, text))
        except (msgspec.DecodeError, RecursionError):
            raise _Close(CloseCode.BAD_REQUEST, "Invalid message received: not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise _Close(CloseCode.BAD_REQUEST, "Invalid message received: no type")
        return message

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            raise _Close(CloseCode.TOO_MANY_INIT_REQUESTS, "Too many initialisation requests")
        if kind == "ping":
            await self._send_message({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self._subscribe(_operation_id(message), message.get("payload"))
        elif kind == "complete":
            operation = self._operations.pop(_operation_id(message), None)
            if operation is not None:
                operation.cancel()
        else:
            raise _Close(CloseCode.BAD_REQUEST, f"Invalid message received: type {kind[:40]!r}")

    async def _subscribe(self, operation_id: str, payload: Any) -> None:
        if operation_id in self._operations:
            raise _Close(
                CloseCode.SUBSCRIBER_EXISTS, f"Subscriber for {operation_id} already exists"
            )
        if len(self._operations) >= self._services.limits.max_operations:
            too_many = client_error(
                f"at most {self._services.limits.max_operations} operations per connection",
                "TOO_MANY_OPERATIONS",
            )
            await self._send_error(operation_id, [too_many])
            return
        self._operations[operation_id] = asyncio.create_task(
            self._operate(operation_id, payload), name=f"graphql-ws-{operation_id}"
        )

    async def _operate(self, operation_id: str, payload: Any) -> None:
        try:
            await self._respond(operation_id, payload)
        except _Disconnected:
            self._stop(None)  # the client went away mid-send: nothing went wrong here
        except Exception:
            log.exception("unexpected failure in a GraphQL WebSocket operation")
            self._stop(_Close(CloseCode.INTERNAL_ERROR, "Internal server error"))
        finally:
            # The id may already name a new operation (completed, then subscribed again).
            if self._operations.get(operation_id) is asyncio.current_task():
                del self._operations[operation_id]

    async def _respond(self, operation_id: str, payload: Any) -> None:
        assert self._context is not None
        try:
            request = GraphQLRequest.from_json(payload)
            responses = self._services.executor.stream(request, self._context)
            try:
                # Responses come encoded (shared by subscribers): wrapped, not re-encoded.
                prefix = b'{"id":%s,"type":"next","payload":' % msgspec.json.encode(operation_id)
                async for response in responses:
                    await self._send_text(prefix + response + b"}")
            finally:
                await responses.aclose()
        except RequestError as error:
            await self._send_error(operation_id, error.errors)
        else:
            await self._send_message({"id": operation_id, "type": "complete"})

    async def _send_error(self, operation_id: str, errors: list[dict[str, Any]]) -> None:
        await self._send_message({"id": operation_id, "type": "error", "payload": errors})

    async def _send_message(self, message: dict[str, Any]) -> None:
        await self._send_text(msgspec.json.encode(message))

    async def _send_text(self, encoded: bytes) -> None:
        event: WebSocketSendEvent = {
            "type": "websocket.send",
            "bytes": None,
            "text": encoded.decode(),
        }
        try:
            await self._send(event)
        except OSError:  # the server's own word for a client that is gone
            raise _Disconnected from None

    async def _stop_operations(self) -> None:
        operations = list(self._operations.values())
        self._operations.clear()
        for operation in operations:
            operation.cancel()
        await asyncio.gather(*operations, return_exceptions=True)

    async def _close(self, code: CloseCode, reason: str) -> None:
        close: WebSocketCloseEvent = {"type": "websocket.close", "code": code, "reason": reason}
        with contextlib.suppress(OSError):  # the client is gone already
            await self._send(close)


def _operation_id(message: dict[str, Any]) -> str:
    operation_id = message.get("id")
    if not isinstance(operation_id, str) or not operation_id or len(operation_id) > 128:
        raise _Close(CloseCode.BAD_REQUEST, "Invalid message received: bad id")
    return operation_id
