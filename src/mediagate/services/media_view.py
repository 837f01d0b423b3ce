"""What a client is shown of a media row: never another row's data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime

from mediagate.db.media_rows import MediaRecord
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


_RENAMED = {"alt": "alt_text"}


def to_view(record: MediaRecord, *, url: str | None, poster_url: str | None) -> MediaView:
    copied = {
        field.name: getattr(record, _RENAMED.get(field.name, field.name))
        for field in fields(MediaView)
        if field.name not in ("url", "poster_url")
    }
    return MediaView(**copied, url=url, poster_url=poster_url)
