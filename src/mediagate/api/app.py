"""The one wiring point of the API: settings in, a Litestar app out."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_400_BAD_REQUEST, HTTP_503_SERVICE_UNAVAILABLE

from mediagate.api.context import RequestContext, authenticate
from mediagate.api.graphql.executor import (
    GraphQLExecutor,
    GraphQLRequest,
    RequestError,
    load_schema,
)
from mediagate.api.resolvers import RESOLVERS
from mediagate.auth.tokens import TokenVerifier
from mediagate.config import Settings
from mediagate.db import engine as db_engine
from mediagate.db import media_repository
from mediagate.events.publisher import JobPublisher
from mediagate.services.uploads import UploadService
from mediagate.storage.object_store import ObjectStore

MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Services:
    executor: GraphQLExecutor
    uploads: UploadService
    verifier: TokenVerifier
    publisher: JobPublisher


@post("/graphql", status_code=HTTP_200_OK)
async def graphql_endpoint(request: Request[Any, Any, State], state: State) -> Response[Any]:
    services: Services = state.services
    try:
        graphql_request = GraphQLRequest.from_json(json.loads(await request.body()))
        context = RequestContext(
            uploads=services.uploads,
            verifier=services.verifier,
            authorization=request.headers.get("authorization"),
        )
        return Response(await services.executor.run(graphql_request, context))
    except json.JSONDecodeError:
        errors = [{"message": "the body is not JSON", "extensions": {"code": "BAD_REQUEST"}}]
        return Response({"errors": errors}, status_code=HTTP_400_BAD_REQUEST)
    except RequestError as error:
        return Response({"errors": error.errors}, status_code=HTTP_400_BAD_REQUEST)


@get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(state: State) -> Response[dict[str, str]]:
    """Readiness: the database answers and the broker connection is up."""
    services: Services = state.services
    checks = {
        "database": "ok" if await media_repository.ping() else "down",
        "broker": "ok" if services.publisher.is_connected else "down",
    }
    ready = all(value == "ok" for value in checks.values())
    return Response(checks, status_code=HTTP_200_OK if ready else HTTP_503_SERVICE_UNAVAILABLE)


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = db_engine.bind_engine(settings, durable_commits=False)
        await db_engine.start_pool(engine, settings.db_pool_size)
        publisher = await JobPublisher.connect(settings)
        verifier = TokenVerifier(settings)
        uploads = UploadService(settings, ObjectStore(settings), publisher)
        schema = load_schema(RESOLVERS, authenticate)
        executor = GraphQLExecutor(
            schema,
            introspection=settings.graphql_introspection,
            max_depth=settings.graphql_max_depth,
            max_aliases=settings.graphql_max_aliases,
        )
        app.state.services = Services(executor, uploads, verifier, publisher)
        # Long-lived start-up objects leave the collector's view, and young garbage is
        # collected less often: fewer, shorter pauses under load (tail latency).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        try:
            yield
        finally:
            await publisher.close()
            await engine.close_connection_pool()

    cors = (
        CORSConfig(
            allow_origins=list(settings.cors_allowed_origins),
            allow_methods=["POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
        if settings.cors_allowed_origins
        else None
    )
    return Litestar(
        route_handlers=[graphql_endpoint, healthz, readyz],
        lifespan=[lifespan],
        cors_config=cors,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=None,
        debug=False,
    )
