"""The errors a GraphQL client sees: the one formatter (unexpected errors are masked),
and the entries for failures outside execution (a bad body, method or size)."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from mediagate.db.engine import is_unavailable
from mediagate.errors import ClientError
from mediagate.storage.object_store import is_unreachable

log = logging.getLogger(__name__)


class RequestError(Exception):
    """The HTTP request is not a GraphQL request we can run (HTTP 400)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


def client_error(message: str, code: str) -> dict[str, Any]:
    """An error entry for failures outside GraphQL execution (bad HTTP body, method, size)."""
    return {"message": message, "extensions": {"code": code}}


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The one place an error becomes client-visible. Unexpected errors are masked."""
    original = error.original_error
    if isinstance(original, ClientError):
        message, extensions = original.message, {"code": original.code, **original.details}
    elif original is not None and (is_unavailable(original) or is_unreachable(original)):
        log.warning("database or store unavailable in %s: %r", error.path, original)
        message = "the service is unavailable for a moment; try again"
        extensions = {"code": "SERVICE_UNAVAILABLE"}
    elif original is None or isinstance(original, GraphQLError):
        # Errors graphql-core raised itself, or our scalars raised: all about the input.
        message = error.message
        extensions = {"code": "BAD_USER_INPUT", **(error.extensions or {})}
    else:
        log.error("unexpected error in %s", error.path, exc_info=original)
        message, extensions = "Internal server error", {"code": "INTERNAL_SERVER_ERROR"}
    formatted: dict[str, Any] = {"message": message, "extensions": extensions}
    if error.path:
        formatted["path"] = error.path
    if error.locations:
        formatted["locations"] = [
            {"line": loc.line, "column": loc.column} for loc in error.locations
        ]
    return formatted


def bad_request(message: str) -> RequestError:
    """The request is not one we can run: BAD_REQUEST (HTTP 400 over HTTP)."""
    return RequestError([client_error(message, "BAD_REQUEST")])


def error_body(message: str, code: str = "BAD_REQUEST") -> dict[str, Any]:
    """A whole response body for a failure outside execution."""
    return {"errors": [client_error(message, code)]}
