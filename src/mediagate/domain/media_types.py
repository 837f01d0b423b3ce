"""The media types mediagate accepts and what each one must look like."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class MediaType:
    content_type: str
    kind: MediaKind
    extensions: tuple[str, ...]


MEDIA_TYPES: dict[str, MediaType] = {
    media.content_type: media
    for media in (
        MediaType("image/jpeg", MediaKind.IMAGE, (".jpg", ".jpeg", ".jpe")),
        MediaType("image/png", MediaKind.IMAGE, (".png",)),
        MediaType("image/gif", MediaKind.IMAGE, (".gif",)),
        MediaType("image/webp", MediaKind.IMAGE, (".webp",)),
        MediaType("video/mp4", MediaKind.VIDEO, (".mp4", ".m4v")),
        MediaType("video/quicktime", MediaKind.VIDEO, (".mov", ".qt")),
        MediaType("video/webm", MediaKind.VIDEO, (".webm",)),
    )
}

STAGES: frozenset[str] = frozenset(
    {"intake", "customerRequests", "inspection", "testDrive", "initialReport", "general"}
)
DEFAULT_STAGE = "general"
