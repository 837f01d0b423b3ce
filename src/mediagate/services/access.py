"""Who may touch a session: its own organization only."""

from __future__ import annotations

import uuid

from mediagate.auth.tokens import Principal
from mediagate.db import media_repository as repo
from mediagate.errors import Forbidden, NotFound


async def authorize_session(principal: Principal, session_id: uuid.UUID) -> None:
    organization = await repo.session_organization(session_id)
    if organization is None:
        raise NotFound("session not found")
    if organization != principal.organization_id:
        raise Forbidden("access denied")
