"""GraphQL over HTTP: POST /graphql as a plain ASGI handler, the hot path, skipping the
framework's request and response models (about a tenth of a request's CPU). A WebSocket
on the same path is handed to the graphql-transport-ws protocol (ws.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import msgspec
from litestar import asgi
from litestar.enums import ScopeType
from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Receive,
    Scope,
    Send,
)

from mediagate.api.context import RequestContext
from mediagate.api.graphql.errors import RequestError, error_body
from mediagate.api.graphql.executor import GraphQLRequest
from mediagate.api.graphql.ws import GraphQLWebSocket
from mediagate.api.services import Services

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def _json_response(
    status: int, body: dict[str, Any], request_id: str
) -> tuple[HTTPResponseStartEvent, HTTPResponseBodyEvent]:
    payload = msgspec.json.encode(body)
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            # The audit log records it as the reference of what this request changed.
            (b"x-request-id", request_id.encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": payload, "more_body": False}


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None past MAX_BODY_BYTES (or when the client went away).

    The caller bounds the time it may take."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message["body"])
        size += len(message["body"])
        if size > MAX_BODY_BYTES:
            return None
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: HTTPScope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


@asgi("/graphql", is_mount=False, copy_scope=False)
async def graphql_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /graphql as a plain ASGI handler: the hot path skips the framework's
    request and response models (about a tenth of a request's CPU). WebSocket
    connections on the same path speak graphql-transport-ws."""
    if scope["type"] == ScopeType.WEBSOCKET:
        services: Services = scope["app"].state.services
        subprotocols = list(scope.get("subprotocols", ()))
        await GraphQLWebSocket(services.sockets, subprotocols, receive, send).run()
        return
    request_id = uuid.uuid4().hex
    if scope["method"] != "POST":
        status, body = 405, error_body("use POST")
    else:
        status, body = await _execute(scope, receive, request_id)
    start, payload = _json_response(status, body, request_id)
    await send(start)
    await send(payload)


async def _execute(
    scope: HTTPScope, receive: Receive, request_id: str
) -> tuple[int, dict[str, Any]]:
    services: Services = scope["app"].state.services
    try:
        async with asyncio.timeout(services.body_timeout):
            raw = await _read_body(receive)
    except TimeoutError:
        return 408, error_body("the body arrived too slowly")
    if raw is None:
        return 413, error_body("the body is too large")
    try:
        graphql_request = GraphQLRequest.from_json(msgspec.json.decode(raw))
        context = RequestContext(
            uploads=services.uploads,
            webhooks=services.webhooks,
            verifier=services.verifier,
            authorization=_header(scope, b"authorization"),
            request_id=request_id,
        )
        return 200, await services.executor.run(graphql_request, context)
    except msgspec.DecodeError:
        return 400, error_body("the body is not JSON")
    except RecursionError:  # msgspec's own limit on nesting, far below the body limit
        return 400, error_body("the body nests too deeply")
    except RequestError as error:
        return 400, {"errors": error.errors}
    except Exception:
        log.exception("unexpected failure serving /graphql")
        return 500, error_body("Internal server error", "INTERNAL_SERVER_ERROR")
