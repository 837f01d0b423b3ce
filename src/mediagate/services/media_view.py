"""What a client is shown of a media row: never another row's data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from mediagate.db.media_repository import MediaRecord
from mediagate.domain.status import MediaStatus


@dataclass(frozen=True, slots=True)
class MediaView:
    id: uuid.UUID
    session_id: uuid.UUID
    file_key: str
    status: MediaStatus
    original_filename: str
    content_type: str
    stage: str | None
    alt: str | None
    file_size: int | None
    rejection_reason: str | None
    url: str | None
    poster_url: str | None
    width: int | None
    height: int | None
    duration_seconds: float | None
    uploaded_at: datetime | None
    processed_at: datetime | None
    created_at: datetime


def to_view(record: MediaRecord, *, url: str | None, poster_url: str | None) -> MediaView:
    return MediaView(
        id=record.id,
        session_id=record.session_id,
        file_key=record.file_key,
        status=record.status,
        original_filename=record.original_filename,
        content_type=record.content_type,
        stage=record.stage,
        alt=record.alt_text,
        file_size=record.file_size,
        rejection_reason=record.rejection_reason,
        url=url,
        poster_url=poster_url,
        width=record.width,
        height=record.height,
        duration_seconds=record.duration_seconds,
        uploaded_at=record.uploaded_at,
        processed_at=record.processed_at,
        created_at=record.created_at,
    )
