"""The one wiring point of the API: settings in, a Litestar app out."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import Litestar, Request, Response, asgi, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.response import File
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_401_UNAUTHORIZED,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    Scope,
    Send,
)

from mediagate.api.context import RequestContext, authenticate
from mediagate.api.graphql.executor import (
    GraphQLExecutor,
    GraphQLRequest,
    RequestError,
    client_error,
    load_schema,
)
from mediagate.api.graphql.ws import GraphQLWebSocket, SocketServices
from mediagate.api.resolvers import RESOLVERS, SUBSCRIPTIONS
from mediagate.auth.tokens import TokenVerifier
from mediagate.config import Settings
from mediagate.db import engine as db_engine
from mediagate.db.media_changes import MediaChangeListener
from mediagate.events.publisher import JobPublisher
from mediagate.observability import metrics
from mediagate.services import monitoring
from mediagate.services.live_updates import MediaFeed
from mediagate.services.uploads import UploadService
from mediagate.storage.object_store import ObjectStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
CLIENT_DIR = Path(__file__).resolve().parents[3] / "clients" / "js"
DEMO_DIR = Path(__file__).with_name("demo")
# On every response: no address of ours leaks to another site in a Referer, and no
# response is taken for another type than it declares.
SECURITY_HEADERS = ((b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff"))


@dataclass(frozen=True, slots=True)
class Services:
    executor: GraphQLExecutor
    uploads: UploadService
    verifier: TokenVerifier
    publisher: JobPublisher
    sockets: SocketServices
    body_timeout: float
    metrics: monitoring.CachedSnapshots
    metrics_token: str | None


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
        status, body = 405, {"errors": [client_error("use POST", "BAD_REQUEST")]}
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
        return 408, {"errors": [client_error("the body arrived too slowly", "BAD_REQUEST")]}
    if raw is None:
        return 413, {"errors": [client_error("the body is too large", "BAD_REQUEST")]}
    try:
        graphql_request = GraphQLRequest.from_json(msgspec.json.decode(raw))
        context = RequestContext(
            uploads=services.uploads,
            verifier=services.verifier,
            authorization=_header(scope, b"authorization"),
            request_id=request_id,
        )
        return 200, await services.executor.run(graphql_request, context)
    except msgspec.DecodeError:
        return 400, {"errors": [client_error("the body is not JSON", "BAD_REQUEST")]}
    except RecursionError:  # msgspec's own limit on nesting, far below the body limit
        return 400, {"errors": [client_error("the body nests too deeply", "BAD_REQUEST")]}
    except RequestError as error:
        return 400, {"errors": error.errors}
    except Exception:
        log.exception("unexpected failure serving /graphql")
        return 500, {"errors": [client_error("Internal server error", "INTERNAL_SERVER_ERROR")]}


@get("/client/mediagate.js", media_type="text/javascript")
async def browser_client() -> File:
    """The browser client (clients/js), an ES module without dependencies."""
    return File(CLIENT_DIR / "mediagate.js", content_disposition_type="inline")


def demo_handlers(settings: Settings) -> list[HTTPRouteHandler]:
    """A page that uploads with the browser client (served when DEMO_PAGE=true), its
    script and style; it runs code of this origin only and talks to this API and the
    store alone."""
    headers = {"Content-Security-Policy": demo_policy(settings)}

    @get("/demo", media_type="text/html")
    async def demo_page() -> File:
        return File(DEMO_DIR / "index.html", content_disposition_type="inline", headers=headers)

    @get("/demo/demo.js", media_type="text/javascript")
    async def demo_script() -> File:
        return File(DEMO_DIR / "demo.js", content_disposition_type="inline", headers=headers)

    @get("/demo/demo.css", media_type="text/css")
    async def demo_style() -> File:
        return File(DEMO_DIR / "demo.css", content_disposition_type="inline", headers=headers)

    return [demo_page, demo_script, demo_style]


def demo_policy(settings: Settings) -> str:
    """Scripts and styles from this origin only; requests to it and to the store (the
    PUTs, the processed images); nothing else, and no framing."""
    parts = urlsplit(settings.s3.public_endpoint)
    store = f"{parts.scheme}://{parts.netloc}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"connect-src 'self' {store}; img-src {store} data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


async def _add_security_headers(message: Message, _scope: Scope) -> None:
    if message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]


@get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(state: State) -> Response[dict[str, str]]:
    """Readiness: the database answers and the broker connection is up."""
    services: Services = state.services
    checks = await monitoring.readiness(services.publisher)
    ready = all(value == "ok" for value in checks.values())
    return Response(checks, status_code=HTTP_200_OK if ready else HTTP_503_SERVICE_UNAVAILABLE)


@get("/metrics", media_type=metrics.CONTENT_TYPE)
async def metrics_endpoint(state: State, request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus scrape: uploads by status, viruses found, processing time, queue depth.
    With METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`."""
    services: Services = state.services
    if not _may_scrape(services.metrics_token, request.headers.get("authorization")):
        return Response(b"a metrics token is required\n", status_code=HTTP_401_UNAUTHORIZED)
    return Response(metrics.render(await services.metrics.get()))


def _may_scrape(token: str | None, authorization: str | None) -> bool:
    if token is None:
        return True
    offered = (authorization or "").removeprefix("Bearer ").encode()
    return hmac.compare_digest(offered, token.encode())


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = db_engine.bind_engine(settings)
        await db_engine.start_pool(engine, settings.database.pool_size)
        publisher = await JobPublisher.connect(settings)
        verifier = TokenVerifier(settings)
        uploads = UploadService(settings, ObjectStore(settings), publisher)
        schema = load_schema(RESOLVERS, authenticate, SUBSCRIPTIONS)
        executor = GraphQLExecutor(schema, settings.graphql)
        feed = MediaFeed(uploads, settings.websocket)
        listener = MediaChangeListener(settings.database.url, feed.deliver, feed.resync)
        await listener.start()
        stall_watch = asyncio.create_task(feed.watch_stalls(), name="subscriber-stall-watch")
        sockets = SocketServices(
            executor,
            uploads,
            verifier,
            feed,
            settings.websocket,
        )
        stuck_after = timedelta(
            seconds=settings.uploads.upload_url_ttl + settings.reconciler.stuck_after
        )
        app.state.services = Services(
            executor,
            uploads,
            verifier,
            publisher,
            sockets,
            settings.http.body_timeout,
            monitoring.CachedSnapshots(
                lambda: monitoring.snapshot(publisher, feed, stuck_after),
                feed,
                settings.api.metrics_cache_seconds,
            ),
            settings.api.metrics_token,
        )
        # Long-lived start-up objects leave the collector's view, and young garbage is
        # collected less often: fewer, shorter pauses under load (tail latency).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        try:
            yield
        finally:
            stall_watch.cancel()
            await asyncio.gather(stall_watch, return_exceptions=True)
            await listener.close()
            await publisher.close()
            await engine.close_connection_pool()

    cors = (
        CORSConfig(
            allow_origins=list(settings.http.cors_allowed_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-Request-Id"],
        )
        if settings.http.cors_allowed_origins
        else None
    )
    return Litestar(
        route_handlers=[
            graphql_endpoint,
            browser_client,
            *(demo_handlers(settings) if settings.api.demo_page else []),
            healthz,
            readyz,
            metrics_endpoint,
        ],
        lifespan=[lifespan],
        cors_config=cors,
        before_send=[_add_security_headers],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=None,
        # Its default configures the root logger anew: ours (JSON lines) stays in place.
        logging_config=None,
        debug=False,
    )
