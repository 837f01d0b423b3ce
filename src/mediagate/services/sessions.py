"""Sessions: who may touch one (its own organization only), the rows uploads add, and
what the product's backend (a service token) does with them: create, close, list."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mediagate.config.sections import UploadSettings
from mediagate.db import media_rows as repo
from mediagate.db import session_rows
from mediagate.db.media_rows import Bounds, MultipartColumns
from mediagate.db.session_rows import SessionRecord
from mediagate.domain.media_types import MediaKind
from mediagate.domain.principal import Principal
from mediagate.domain.session_fields import check_external_id, encode_metadata
from mediagate.domain.status import MediaStatus
from mediagate.domain.validation import (
    CLOCK_SKEW,
    UploadRequest,
    check_declared_size,
    check_page_size,
)
from mediagate.errors import (
    BadUserInput,
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    QuotaExceeded,
    RateLimited,
)
from mediagate.observability.metrics import REFUSALS
from mediagate.services.paging import Connection, connection, decode_cursor, encode_cursor


async def authorize_session(principal: Principal, session_id: uuid.UUID) -> None:
    organization = await session_rows.session_organization(session_id)
    if organization is None:
        raise NotFound("session not found")
    if organization != principal.organization_id:
        raise Forbidden("access denied")


def check_size(settings: UploadSettings, request: UploadRequest, size: int | None) -> None:
    """A size is given when one is required, and within the type's limit."""
    if size is None:
        if settings.require_size:
            REFUSALS.count("UPLOAD_REQUIRE_SIZE")
            raise BadUserInput("size is required (UPLOAD_REQUIRE_SIZE)", field="size")
        return
    kind = request.media_type.kind
    try:
        check_declared_size(size, request.media_type, settings.max_bytes(kind))
    except BadUserInput:
        REFUSALS.count("MAX_IMAGE_BYTES" if kind is MediaKind.IMAGE else "MAX_VIDEO_BYTES")
        raise


def upload_bounds(settings: UploadSettings, request: UploadRequest, declared: int | None) -> Bounds:
    """What a new upload is checked against. Until its file is stored it counts at its
    declared size, or at its type's limit when it declared none: the most it may be."""
    return Bounds(
        max_items=settings.max_session_items,
        max_pending=settings.max_pending_per_user,
        late_allowance=CLOCK_SKEW,
        charge=declared if declared is not None else settings.max_bytes(request.media_type.kind),
        default_quota=settings.org_quota_bytes,
    )


async def add_pending(
    principal: Principal,
    session_id: uuid.UUID,
    request: UploadRequest,
    file_key: str,
    expires_at: datetime,
    request_id: str,
    bounds: Bounds,
    declared_size: int | None = None,
    multipart: MultipartColumns | None = None,
) -> uuid.UUID:
    """A PENDING_UPLOAD row in the session, if it is the principal's organization's, is
    open, has room, the user has fewer outstanding uploads than allowed and the
    organization's quota holds the charge; raises the refusal's error otherwise."""
    try:
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
            bounds=bounds,
            declared_size=declared_size,
            multipart=multipart,
        )
    except repo.TooManyPending as refusal:
        wait = max(1, math.ceil((refusal.retry_at - datetime.now(UTC)).total_seconds()))
        REFUSALS.count("MAX_PENDING_UPLOADS_PER_USER")
        raise RateLimited(
            f"you have {bounds.max_pending} uploads waiting for their files, the most one "
            f"user may; retry in {wait} s (or finish one)",
            limit="MAX_PENDING_UPLOADS_PER_USER",
            retryAfter=wait,
        ) from None
    except repo.OverQuota as refusal:
        REFUSALS.count("ORG_STORAGE_QUOTA_BYTES")
        raise QuotaExceeded(
            f"the organization's storage quota of {refusal.quota} bytes would be passed"
            f" by {bounds.charge} more; delete media or ask for a larger quota",
            limit="ORG_STORAGE_QUOTA_BYTES",
        ) from None
    if inserted is not None:
        return inserted
    await authorize_session(principal, session_id)  # raises the precise error
    session = await session_rows.find_session(principal.organization_id, session_id)
    if session is not None and session.closed_at is not None:
        raise Conflict("the session is closed: it takes no new uploads")
    if await session_rows.session_item_count(session_id) >= bounds.max_items:
        REFUSALS.count("MAX_SESSION_ITEMS")
        raise LimitExceeded(
            f"the session has {bounds.max_items} items, the most it may have; use another session",
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
