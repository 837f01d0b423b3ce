"""Magic numbers: do the bytes match the declared content type?"""

from __future__ import annotations

from pathlib import Path

from mediagate.processing.errors import UnacceptableMedia

HEAD_BYTES = 64

# ISO base media file format boxes that may open an MP4 or a QuickTime movie.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def _is_jpeg(head: bytes) -> bool:
    return head.startswith(b"\xff\xd8\xff")


def _is_png(head: bytes) -> bool:
    return head.startswith(b"\x89PNG\r\n\x1a\n")


def _is_gif(head: bytes) -> bool:
    return head[:6] in (b"GIF87a", b"GIF89a")


def _is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _is_iso_media(head: bytes) -> bool:
    return head[4:8] in _ISO_BOXES


def _is_webm(head: bytes) -> bool:
    return head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head


_CHECKS = {
    "image/jpeg": _is_jpeg,
    "image/png": _is_png,
    "image/gif": _is_gif,
    "image/webp": _is_webp,
    "video/mp4": _is_iso_media,
    "video/quicktime": _is_iso_media,
    "video/webm": _is_webm,
}


def check_magic(head: bytes, declared_type: str) -> None:
    if not _CHECKS[declared_type](head):
        raise UnacceptableMedia(f"the file's content is not {declared_type}")


def check_file_magic(path: Path, declared_type: str) -> None:
    with path.open("rb") as stream:
        check_magic(stream.read(HEAD_BYTES), declared_type)
