"""The one wiring point of the API: settings in, a Litestar app out."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from litestar import Litestar, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from litestar.response import File
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_401_UNAUTHORIZED,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import (
    Message,
    Scope,
)

from mediagate.api.context import authenticate
from mediagate.api.graphql.executor import GraphQLExecutor
from mediagate.api.graphql.http import MAX_BODY_BYTES, graphql_endpoint
from mediagate.api.graphql.schema import load_schema
from mediagate.api.graphql.ws import SocketServices
from mediagate.api.resolvers import RESOLVERS, SUBSCRIPTIONS
from mediagate.api.service_resolvers import SERVICE_RESOLVERS
from mediagate.api.services import Services
from mediagate.auth.tokens import TokenVerifier
from mediagate.config import Settings
from mediagate.db import engine as db_engine
from mediagate.db.media_changes import MediaChangeListener
from mediagate.events.publisher import JobPublisher
from mediagate.observability import metrics
from mediagate.outbound.http import OutboundClient
from mediagate.services import monitoring
from mediagate.services.live_updates import MediaFeed
from mediagate.services.uploads import UploadService
from mediagate.services.webhooks import WebhookService, configure_endpoint_for_all
from mediagate.storage.object_store import ObjectStore

log = logging.getLogger(__name__)

CLIENT_DIR = Path(__file__).resolve().parents[3] / "clients" / "js"
DEMO_DIR = Path(__file__).with_name("demo")
# On every response: no address of ours leaks to another site in a Referer, and no
# response is taken for another type than it declares.
SECURITY_HEADERS = ((b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff"))


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


async def _start(settings: Settings, opened: AsyncExitStack) -> Services:
    """Open what the API needs, in this order; `opened` closes each in reverse, also when
    a later step fails."""
    engine = db_engine.bind_engine(settings)
    await db_engine.start_pool(engine, settings.database.pool_size)
    opened.push_async_callback(engine.close_connection_pool)
    publisher = await JobPublisher.connect(settings)
    opened.push_async_callback(publisher.close)
    verifier = TokenVerifier(settings)
    uploads = UploadService(settings, ObjectStore(settings), publisher)
    outbound = OutboundClient(settings.outbound)
    opened.push_async_callback(outbound.close)
    webhooks = WebhookService(settings.webhooks, outbound)
    await configure_endpoint_for_all(settings)
    executor = GraphQLExecutor(
        load_schema({**RESOLVERS, **SERVICE_RESOLVERS}, authenticate, SUBSCRIPTIONS),
        settings.graphql,
    )
    feed = MediaFeed(uploads, settings.websocket)
    listener = MediaChangeListener(settings.database.url, feed.deliver, feed.resync)
    await listener.start()
    opened.push_async_callback(listener.close)
    stall_watch = asyncio.create_task(feed.watch_stalls(), name="subscriber-stall-watch")
    opened.push_async_callback(_cancelled, stall_watch)
    stuck_after = timedelta(
        seconds=settings.uploads.upload_url_ttl + settings.reconciler.stuck_after
    )
    return Services(
        executor,
        uploads,
        webhooks,
        verifier,
        publisher,
        SocketServices(executor, uploads, webhooks, verifier, feed, settings.websocket),
        settings.http.body_timeout,
        monitoring.CachedSnapshots(
            lambda: monitoring.snapshot(publisher, feed, stuck_after),
            feed,
            settings.api.metrics_cache_seconds,
        ),
        settings.api.metrics_token,
    )


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as opened:
            app.state.services = await _start(settings, opened)
            # Long-lived start-up objects leave the collector's view, and young garbage is
            # collected less often: fewer, shorter pauses under load (tail latency).
            gc.collect()
            gc.freeze()
            gc.set_threshold(20_000, 20, 50)
            yield

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
