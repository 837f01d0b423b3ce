"""Sessions: who may touch one (its own organization only), and the rows uploads add."""

from __future__ import annotations

import uuid
from datetime import datetime

from mediagate.db import media_rows as repo
from mediagate.db import session_rows
from mediagate.db.media_rows import MultipartColumns
from mediagate.domain.principal import Principal
from mediagate.domain.validation import UploadRequest
from mediagate.errors import Forbidden, LimitExceeded, NotFound


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
    if await session_rows.session_item_count(session_id) >= max_items:
        raise LimitExceeded(
            f"the session has {max_items} items, the most it may have; use another session",
            limit="MAX_SESSION_ITEMS",
        )
    raise NotFound("session not found")  # deleted meanwhile
