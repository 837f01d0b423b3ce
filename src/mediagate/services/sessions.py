"""Sessions: who may touch one (its own organization only), and the rows uploads add."""

from __future__ import annotations

import uuid
from datetime import datetime

from mediagate.db import media_repository as repo
from mediagate.db.media_repository import MultipartColumns
from mediagate.domain.principal import Principal
from mediagate.domain.validation import UploadRequest
from mediagate.errors import Forbidden, NotFound


async def authorize_session(principal: Principal, session_id: uuid.UUID) -> None:
    organization = await repo.session_organization(session_id)
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
    multipart: MultipartColumns | None = None,
) -> uuid.UUID | None:
    """A PENDING_UPLOAD row in the session, if it is the principal's organization's."""
    return await repo.insert_pending(
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
    )
