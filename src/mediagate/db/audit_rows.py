"""The audit log as it is read (an organization's, a page at a time) and purged."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from mediagate.db.tables import AuditEvent


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    occurred_at: datetime
    organization_id: uuid.UUID
    session_id: uuid.UUID
    media_id: uuid.UUID
    action: str
    from_status: str | None
    to_status: str
    reason: str | None
    actor: str
    reference: str | None


_AUDIT_COLUMNS = tuple(AuditEvent._meta.get_column_by_name(f.name) for f in fields(AuditRecord))


async def audit_events(
    organization_id: uuid.UUID | None,
    *,
    session_id: uuid.UUID | None,
    media_id: uuid.UUID | None,
    after_id: int,
    limit: int,
) -> list[AuditRecord]:
    """An organization's (None: any, for operators) events of one session or one media
    item, oldest first, after the event `after_id` (the cursor)."""
    where: Any = AuditEvent.id > after_id
    if organization_id is not None:
        where &= AuditEvent.organization_id == organization_id
    if session_id is not None:
        where &= AuditEvent.session_id == session_id
    if media_id is not None:
        where &= AuditEvent.media_id == media_id
    rows = await (
        AuditEvent.select(*_AUDIT_COLUMNS).where(where).order_by(AuditEvent.id).limit(limit)
    )
    return [AuditRecord(**row) for row in rows]


async def purge_audit_events(older_than: datetime) -> int:
    deleted = await (
        AuditEvent.delete().where(AuditEvent.occurred_at < older_than).returning(AuditEvent.id)
    )
    return len(deleted)
