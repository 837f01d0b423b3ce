"""Reading the audit log, for the organization it belongs to, a page at a time; and
dropping what is older than the retention period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from mediagate.db import audit_rows, session_rows
from mediagate.db.audit_rows import AuditRecord
from mediagate.domain.principal import Principal
from mediagate.domain.validation import check_page_size
from mediagate.errors import BadUserInput, Forbidden
from mediagate.services.paging import Connection, connection, decode_id_cursor, encode_cursor

_CURSOR_KIND = "audit"


def cursor_of(event: AuditRecord) -> str:
    return encode_cursor(_CURSOR_KIND, str(event.id))


async def audit_events(
    principal: Principal,
    *,
    session_id: uuid.UUID | None,
    media_id: uuid.UUID | None,
    first: int | None,
    after: str | None,
) -> Connection[AuditRecord]:
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
        after_id=decode_id_cursor(_CURSOR_KIND, after),
        limit=first + 1,
    )
    return connection(events, first, cursor_of)


async def purge_expired(retention_days: int) -> int:
    """Delete the events older than the retention period; returns how many."""
    return await audit_rows.purge_audit_events(datetime.now(UTC) - timedelta(days=retention_days))
