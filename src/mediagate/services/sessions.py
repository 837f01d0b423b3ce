"""Sessions: who may touch one (its own organization only), the rows uploads add, and
what the product's backend (a service token) does with them: create, close, list."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mediagate.db import media_rows as repo
from mediagate.db import session_rows
from mediagate.db.media_rows import MultipartColumns
from mediagate.db.session_rows import SessionRecord
from mediagate.domain.principal import Principal
from mediagate.domain.session_fields import check_external_id, encode_metadata
from mediagate.domain.status import MediaStatus
from mediagate.domain.validation import UploadRequest, check_page_size
from mediagate.errors import BadUserInput, Conflict, Forbidden, LimitExceeded, NotFound
from mediagate.services.paging import Connection, connection, decode_cursor, encode_cursor


async def authorize_session(principal: Principal, session_id: uuid.UUID) -> None:
    organization = await session_rows.session_organization(session_id)
    if organization is None:
        raise NotFound("session not found")
    if organization != principal.organization_id:
        raise Forbidden("access denied")


async def add_pending(
    principal: Principal,
    session_id: uuid.UUID,
    request: UploadRequest,
    file_key: str,
    expires_at: datetime,
    request_id: str,
    max_items: int,
    multipart: MultipartColumns | None = None,
) -> uuid.UUID:
    """A PENDING_UPLOAD row in the session, if it is the principal's organization's and
    has room; raises NotFound, Forbidden or LimitExceeded otherwise."""
    inserted = await repo.insert_pending(
        organization_id=principal.organization_id,
        session_id=session_id,
        file_key=file_key,
        original_filename=request.filename,
        content_type=request.media_type.content_type,
        stage=request.stage,
        uploaded_by=principal.user_id,
        upload_expires_at=expires_at,
        request_id=request_id,
        multipart=multipart,
        max_items=max_items,
    )
    if inserted is not None:
        return inserted
    await authorize_session(principal, session_id)  # raises the precise error
    session = await session_rows.find_session(principal.organization_id, session_id)
    if session is not None and session.closed_at is not None:
        raise Conflict("the session is closed: it takes no new uploads")
    if await session_rows.session_item_count(session_id) >= max_items:
        raise LimitExceeded(
            f"the session has {max_items} items, the most it may have; use another session",
            limit="MAX_SESSION_ITEMS",
        )
    raise NotFound("session not found")  # deleted meanwhile


def require_service(principal: Principal) -> None:
    if not principal.is_service:
        raise Forbidden("this field needs a service token (the product's backend)")


@dataclass(frozen=True, slots=True)
class StatusCount:
    status: MediaStatus
    count: int


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as the product's backend sees it: its fields and its items' statuses."""

    id: uuid.UUID
    external_id: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    closed_at: datetime | None
    media_counts: list[StatusCount]

    @classmethod
    def of(cls, record: SessionRecord, counts: dict[str, int]) -> SessionView:
        return cls(
            record.id,
            record.external_id,
            record.metadata,
            record.created_at,
            record.closed_at,
            [StatusCount(status, counts.get(status, 0)) for status in MediaStatus],
        )


_CURSOR_KIND = "session"


async def _views(records: list[SessionRecord]) -> list[SessionView]:
    counts = await session_rows.media_counts([record.id for record in records])
    return [SessionView.of(record, counts[record.id]) for record in records]


async def _view(record: SessionRecord | None) -> SessionView:
    """The one session's view; None is a session deleted meanwhile."""
    if record is None:
        raise NotFound("session not found")
    return (await _views([record]))[0]


async def create_session(
    principal: Principal, external_id: str | None, metadata: Any
) -> SessionView:
    """Idempotent on external_id within the organization: the same id, the same session."""
    require_service(principal)
    record = await session_rows.create_owned_session(
        principal.organization_id, check_external_id(external_id), encode_metadata(metadata)
    )
    return await _view(record)


async def close_session(principal: Principal, session_id: uuid.UUID) -> SessionView:
    require_service(principal)
    await authorize_session(principal, session_id)
    return await _view(await session_rows.close_session(principal.organization_id, session_id))


async def session(principal: Principal, session_id: uuid.UUID) -> SessionView:
    require_service(principal)
    await authorize_session(principal, session_id)
    return await _view(await session_rows.find_session(principal.organization_id, session_id))


def _cursor_of(view: SessionView) -> str:
    return encode_cursor(_CURSOR_KIND, f"{view.created_at.isoformat()}|{view.id}")


def _position(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    created_at, _, session_id = decode_cursor(_CURSOR_KIND, cursor).partition("|")
    try:
        return datetime.fromisoformat(created_at), uuid.UUID(session_id)
    except ValueError:
        raise BadUserInput("after is not a cursor this API issued", field="after") from None


async def sessions(
    principal: Principal, external_id: str | None, first: int | None, after: str | None
) -> Connection[SessionView]:
    """The organization's sessions, oldest first, or the one of `external_id`."""
    require_service(principal)
    first = check_page_size(first)
    records = await session_rows.session_page(
        principal.organization_id, check_external_id(external_id), _position(after), first + 1
    )
    return connection(await _views(records), first, _cursor_of)
