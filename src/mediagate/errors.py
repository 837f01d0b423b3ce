"""Errors that reach API clients; each carries the GraphQL `extensions.code` it maps to."""

from __future__ import annotations


class ClientError(Exception):
    """A failure the caller can act on. The message is safe to show to that caller."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, **details: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthenticated(ClientError):
    code = "UNAUTHENTICATED"


class Forbidden(ClientError):
    code = "FORBIDDEN"


class NotFound(ClientError):
    code = "NOT_FOUND"


class Conflict(ClientError):
    """The item is in a state that does not allow this now (e.g. being processed)."""

    code = "CONFLICT"


class BadUserInput(ClientError):
    code = "BAD_USER_INPUT"


class ServiceUnavailable(ClientError):
    """A dependency (broker, store) is down; nothing was changed and the call can be retried."""

    code = "SERVICE_UNAVAILABLE"


class LimitExceeded(ClientError):
    """A bound on what one caller may hold was reached (details name it); nothing changed."""

    code = "LIMIT_EXCEEDED"


class RateLimited(ClientError):
    """Too many at once for one caller; `retryAfter` says in how many seconds to retry."""

    code = "RATE_LIMITED"


class QuotaExceeded(ClientError):
    """The organization's storage quota would be passed; nothing changed."""

    code = "QUOTA_EXCEEDED"
