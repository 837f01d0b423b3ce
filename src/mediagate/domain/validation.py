"""Validation of what a client sends to getUploadUrl and confirmUpload."""

from __future__ import annotations

import posixpath
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from mediagate.domain.media_types import DEFAULT_STAGE, MEDIA_TYPES, STAGES, MediaType
from mediagate.errors import BadUserInput

MAX_FILENAME_BYTES = 255
MAX_ALT_CHARS = 2000
# Last-Modified has one-second resolution and the store's clock is not ours.
CLOCK_SKEW = timedelta(seconds=5)
# Unicode bidirectional controls let "gpj.exe" display as "exe.jpg".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


# What one page of a list (sessionMedia, auditEvents) may hold: each item costs the
# event loop its serialization, and ten aliases ask for ten pages at once.
MAX_PAGE = 100
DEFAULT_PAGE = 50


def check_page_size(first: int | None) -> int:
    if first is None or not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be 1 to {MAX_PAGE}", field="first")
    return first


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """What getUploadUrl and startMultipartUpload are asked, once checked."""

    filename: str
    media_type: MediaType
    extension: str
    stage: str


def check_upload_request(filename: str, content_type: str, stage: str | None) -> UploadRequest:
    media_type = parse_content_type(content_type)
    extension = validate_filename(filename, media_type)
    return UploadRequest(filename, media_type, extension, normalise_stage(stage))


def parse_content_type(raw: str) -> MediaType:
    """The allowlisted media type for `raw`; case and surrounding blanks are normalised."""
    normalised = raw.strip().lower()
    if ";" in normalised:
        raise BadUserInput("contentType must not carry parameters", field="contentType")
    media = MEDIA_TYPES.get(normalised)
    if media is None:
        allowed = ", ".join(MEDIA_TYPES)
        raise BadUserInput(f"contentType must be one of: {allowed}", field="contentType")
    return media


def validate_filename(filename: str, media: MediaType) -> str:
    """The filename's extension, lower-cased, once the name is known to be safe."""
    if not filename or not filename.strip():
        raise BadUserInput("filename must not be empty", field="filename")
    if len(filename.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise BadUserInput(f"filename must be at most {MAX_FILENAME_BYTES} bytes", field="filename")
    if "/" in filename or "\\" in filename or ".." in filename:
        raise BadUserInput("filename must not contain path separators or '..'", field="filename")
    if any(_is_control(char) for char in filename):
        raise BadUserInput("filename must not contain control characters", field="filename")
    extension = posixpath.splitext(filename)[1].lower()
    if extension not in media.extensions:
        expected = ", ".join(media.extensions)
        raise BadUserInput(
            f"filename extension must match {media.content_type} ({expected})", field="filename"
        )
    return extension


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS


def normalise_stage(stage: str | None) -> str:
    if stage is None:
        return DEFAULT_STAGE
    if stage not in STAGES:
        raise BadUserInput(f"stage must be one of: {', '.join(sorted(STAGES))}", field="stage")
    return stage


def check_declared_size(size: int, media: MediaType, max_bytes: int) -> int:
    if not 0 < size <= max_bytes:
        raise BadUserInput(
            f"size must be from 1 to {max_bytes} bytes for {media.kind.value}s", field="size"
        )
    return size


def validate_alt(alt: str | None) -> str | None:
    if alt is not None and (len(alt) > MAX_ALT_CHARS or any(_is_control(c) for c in alt)):
        raise BadUserInput(
            f"alt must be at most {MAX_ALT_CHARS} characters without control characters",
            field="alt",
        )
    return alt


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What the store says about an uploaded object (a HEAD response)."""

    size: int
    content_type: str
    last_modified: datetime


def rejection_reason(
    stored: StoredObject,
    declared_type: str,
    max_bytes: int,
    url_expires_at: datetime | None,
    declared_size: int | None = None,
) -> str | None:
    """Why an uploaded object must be rejected, or None when it is acceptable.

    `url_expires_at` is None for a multipart upload: the service itself completed it,
    so when the object appeared says nothing about the URLs.
    """
    if stored.size == 0:
        return "the uploaded file is empty"
    if stored.size > max_bytes:
        return f"the uploaded file is {stored.size} bytes; the limit is {max_bytes} bytes"
    if declared_size is not None and stored.size != declared_size:
        return f"the uploaded file is {stored.size} bytes, not the {declared_size} declared"
    actual_type = stored.content_type.split(";", 1)[0].strip().lower()
    if actual_type != declared_type:
        return f"the upload was sent as {actual_type or 'no type'}, not {declared_type}"
    if url_expires_at is not None and stored.last_modified > url_expires_at + CLOCK_SKEW:
        return "the file was written after the upload URL expired"
    return None
