"""Sessions and the users uploads are made by."""

from __future__ import annotations

import uuid

from mediagate.db.tables import UploadSession, User


async def ensure_user(user_id: uuid.UUID, organization_id: uuid.UUID) -> None:
    await User.insert(User(id=user_id, organization_id=organization_id)).on_conflict(
        action="DO NOTHING"
    )


async def create_session(
    organization_id: uuid.UUID, session_id: uuid.UUID | None = None
) -> uuid.UUID:
    session = UploadSession(id=session_id or uuid.uuid4(), organization_id=organization_id)
    await UploadSession.insert(session)
    return uuid.UUID(str(session.id))


async def delete_session(session_id: uuid.UUID) -> None:
    """The session and (by cascade) its media rows; audit events are kept."""
    await UploadSession.delete().where(UploadSession.id == session_id)


async def session_organization(session_id: uuid.UUID) -> uuid.UUID | None:
    row = (
        await UploadSession.select(UploadSession.organization_id)
        .where(UploadSession.id == session_id)
        .first()
    )
    return None if row is None else row["organization_id"]


async def session_item_count(session_id: uuid.UUID) -> int:
    row = (
        await UploadSession.select(UploadSession.item_count)
        .where(UploadSession.id == session_id)
        .first()
    )
    return 0 if row is None else int(row["item_count"])
