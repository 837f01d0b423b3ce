"""Reading the audit log, for the organization it belongs to, a page at a time; and
dropping what is older than the retention period."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mediagate.db import audit_rows, session_rows
from mediagate.db.audit_rows import AuditRecord
from mediagate.domain.principal import Principal
from mediagate.domain.validation import check_page_size
from mediagate.errors import BadUserInput, Forbidden

_CURSOR_PREFIX = "audit:"
_MAX_EVENT_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class AuditEdge:
    cursor: str
    node: AuditRecord


@dataclass(frozen=True, slots=True)
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@dataclass(frozen=True, slots=True)
class AuditConnection:
    """A page of events in the shape of a GraphQL connection."""

    edges: list[AuditEdge]
    page_info: PageInfo


def cursor_of(event: AuditRecord) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{event.id}".encode()).decode()


def _after_id(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    digits = decoded.removeprefix(_CURSOR_PREFIX)
    if decoded.startswith(_CURSOR_PREFIX) and _is_event_id(digits):
        return int(digits)
    raise BadUserInput("after is not a cursor this API issued", field="after")


def _is_event_id(digits: str) -> bool:
    """Event ids are PostgreSQL bigints: anything else was not issued here."""
    return (
        digits.isascii() and digits.isdigit() and len(digits) <= 19 and int(digits) <= _MAX_EVENT_ID
    )


async def audit_events(
    principal: Principal,
    *,
    session_id: uuid.UUID | None,
    media_id: uuid.UUID | None,
    first: int | None,
    after: str | None,
) -> AuditConnection:
    """The events of one session or one media item, oldest first. Only the caller's
    organization's events are ever read; a session of another organization is
    FORBIDDEN, and one that was purged still shows its history."""
    if (session_id is None) == (media_id is None):
        raise BadUserInput("give exactly one of sessionId and mediaId", field="sessionId")
    first = check_page_size(first)
    if session_id is not None:
        owner = await session_rows.session_organization(session_id)
        if owner is not None and owner != principal.organization_id:
            raise Forbidden("access denied")
    events = await audit_rows.audit_events(
        principal.organization_id,
        session_id=session_id,
        media_id=media_id,
        after_id=_after_id(after),
        limit=first + 1,
    )
    edges = [AuditEdge(cursor_of(event), event) for event in events[:first]]
    end_cursor = edges[-1].cursor if edges else None
    return AuditConnection(edges, PageInfo(len(events) > first, end_cursor))


async def purge_expired(retention_days: int) -> int:
    """Delete the events older than the retention period; returns how many."""
    return await audit_rows.purge_audit_events(datetime.now(UTC) - timedelta(days=retention_days))
