"""Object keys: where uploads land and where their processed copies go."""

from __future__ import annotations

import posixpath
import re
import uuid

from mediagate.domain.media_types import MEDIA_TYPES, MediaKind

UPLOADS_PREFIX = "sessions/"
PROCESSED_PREFIX = "processed/"

_UPLOAD_KEY = re.compile(
    r"^sessions/(?P<session>[0-9a-f-]{36})/(?P<stage>[A-Za-z]+)/(?P<name>[0-9a-f-]{36})(?P<ext>\.[a-z0-9]+)$"
)


def upload_key(session_id: uuid.UUID, stage: str, extension: str) -> str:
    return f"{UPLOADS_PREFIX}{session_id}/{stage}/{uuid.uuid4()}{extension}"


def is_upload_key(key: str) -> bool:
    return _UPLOAD_KEY.match(key) is not None


def processed_key(upload: str, extension: str) -> str:
    """The final key: same session, stage and id under the processed prefix.

    The processed prefix sits outside the bucket-event rule's prefix, so writing
    there never triggers another event.
    """
    stem = posixpath.splitext(upload.removeprefix(UPLOADS_PREFIX))[0]
    return f"{PROCESSED_PREFIX}{stem}{extension}"


def output_extension(content_type: str) -> str:
    """Images are re-encoded to JPEG and videos to H.264/AAC MP4, whatever came in."""
    return ".jpg" if MEDIA_TYPES[content_type].kind is MediaKind.IMAGE else ".mp4"


def poster_key(upload: str) -> str:
    return processed_key(upload, ".poster.jpg")
