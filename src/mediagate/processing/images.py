"""Image sanitizing with Pillow: decode only the declared format, bound the pixel count,
apply the EXIF orientation, drop all metadata, re-encode as JPEG quality 85.

Decisions (documented in docs/api.md, "Processing decisions"):
- transparency is flattened onto white, because every output is a JPEG;
- animated GIF/WebP keep their first frame only;
- an embedded colour profile is applied (converted to sRGB) and then dropped.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import ExifTags, Image, ImageCms, ImageFile, UnidentifiedImageError

from mediagate.processing.errors import ScratchUnavailable, UnacceptableMedia

JPEG_QUALITY = 85
# Pillow only warns between MAX_IMAGE_PIXELS and twice that; we refuse outright.
MAX_PIXELS = 60_000_000
# Decoding cost grows with every scan of a progressive JPEG (each one passes over the
# whole image); cameras and encoders write about ten, mozjpeg's most aggressive ~20.
MAX_JPEG_SCANS = 64
_SOS_MARKER = b"\xff\xda"
_END_OF_IMAGE = b"\xff\xd9"
_READ_CHUNK = 1024 * 1024

_PILLOW_FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}
_ORIENTATION_FIXES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Turned so that source rows become target columns.
_SWAPS_AXES = frozenset(
    {
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
    }
)
# Turned so that the source's first row ends up last (as a row or as a column).
_REVERSES_ROWS = frozenset(
    {
        Image.Transpose.ROTATE_270,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_180,
        Image.Transpose.FLIP_TOP_BOTTOM,
    }
)
_JPEG_READY_MODES = frozenset({"RGB", "L", "YCbCr"})
_SRGB = ImageCms.createProfile("sRGB")

# Pillow has no in-place rotation: turning an image writes a second one. Up to this
# size both are held (2 x 52 MB at 4 bytes a pixel, what one 26 MP photo takes); a
# larger image goes through a scratch file, so the decoder holds one copy of its pixels.
ROTATE_IN_MEMORY_MAX_PIXELS = 13_000_000
_SPILL_BAND_BYTES = 1024 * 1024

# Pillow returns the memory of a large image to the OS when the image is freed, so
# every photo pays again for fresh pages (about a third of a 24 MP photo's time).
# A worker keeps this many 16 MiB blocks for reuse instead: enough for a 40 MP photo,
# or one turned in memory and its copy.
REUSED_BLOCKS = 10


def reuse_image_memory(blocks: int = REUSED_BLOCKS) -> None:
    """Process-wide: call once when a worker starts."""
    Image.core.set_blocks_max(blocks)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ImageResult:
    width: int
    height: int


def check_decoding_cost(
    source: Path, declared_type: str, max_pixels: int = MAX_PIXELS, max_scans: int = MAX_JPEG_SCANS
) -> None:
    """Refuse, from the headers alone, an image too expensive to decode (a bomb, a JPEG
    of hundreds of scans). Anything unreadable passes: the decoder reports it later."""
    try:
        with Image.open(source, formats=[_PILLOW_FORMATS[declared_type]]) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        # Pillow refuses to open anything past twice its own threshold (far above ours):
        # the worst bombs of all, never a reason to let the file through.
        raise UnacceptableMedia(
            f"the image declares more pixels than the decoder opens; the limit is {max_pixels}"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        return
    if width * height > max_pixels:
        raise UnacceptableMedia(f"the image has {width}x{height} pixels; the limit is {max_pixels}")
    scans = _jpeg_scans(source, max_scans) if declared_type == "image/jpeg" else 0
    if scans > max_scans:
        raise UnacceptableMedia(f"the JPEG has {scans} scans or more; the limit is {max_scans}")


def _jpeg_scans(source: Path, stop_after: int) -> int:
    """Start-of-scan markers, counted up to `stop_after` + 1. Entropy-coded data never
    holds one (0xFF is stuffed there), so this over-counts only embedded thumbnails."""
    scans = 0
    previous = b""
    with source.open("rb") as stream:
        while chunk := stream.read(_READ_CHUNK):
            window = previous + chunk
            scans += window.count(_SOS_MARKER)
            if scans > stop_after:
                break
            # Keep the last byte so a marker split across two reads is seen once.
            previous = chunk[-1:] if chunk[-1:] == b"\xff" else b""
    return scans


def sanitize_image(
    source: Path,
    declared_type: str,
    destination: Path,
    max_pixels: int = MAX_PIXELS,
    rotate_in_memory_max_pixels: int = ROTATE_IN_MEMORY_MAX_PIXELS,
) -> ImageResult:
    """Write a clean JPEG of `source` to `destination`; raise UnacceptableMedia if it is not one.
    A large image is turned through a scratch file in `destination`'s directory."""
    try:
        with Image.open(source, formats=[_PILLOW_FORMATS[declared_type]]) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise UnacceptableMedia(
                    f"the image has {width}x{height} pixels; the limit is {max_pixels}"
                )
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
            profile = _foreign_profile(image.info.get("icc_profile"))
            if image.format == "JPEG" and profile is None:
                # Decode straight to YCbCr: the JPEG encoder takes it as is, which saves
                # a colour conversion on the way in and another on the way out.
                image.draft("YCbCr", image.size)
            image.load()
            clean = _cleaned(
                image, profile, orientation, destination.parent, rotate_in_memory_max_pixels
            )
            _save_jpeg(clean, destination)
            return ImageResult(width=clean.width, height=clean.height)
    except (UnacceptableMedia, ScratchUnavailable):
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise UnacceptableMedia(f"the file is not a readable {declared_type}: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnacceptableMedia(f"the image is corrupt: {error}") from None


def _cleaned(
    image: Image.Image,
    profile: ImageCms.ImageCmsProfile | None,
    orientation: int,
    scratch: Path,
    rotate_in_memory_max_pixels: int,
) -> Image.Image:
    """Flattened, in sRGB and upright: each step frees the pixels of the one before."""
    clean = _replacing(image, _without_alpha(image))
    if profile is not None:
        clean = _in_srgb(clean, profile)
    fix = _ORIENTATION_FIXES.get(orientation)
    if fix is None:
        return clean
    if clean.width * clean.height > rotate_in_memory_max_pixels:
        return _turned_through_disk(clean, fix, scratch)
    return _replacing(clean, clean.transpose(fix))


def _save_jpeg(image: Image.Image, destination: Path) -> None:
    """The pixels are decoded by now: a failure here is the disk's, not the file's."""
    try:
        image.save(destination, "JPEG", quality=JPEG_QUALITY)
        with destination.open("rb") as written:
            written.seek(-len(_END_OF_IMAGE), os.SEEK_END)
            complete = written.read() == _END_OF_IMAGE
    except OSError as error:
        raise ScratchUnavailable(f"the processed copy could not be written: {error}") from None
    # Pillow's writer does not check for a short write (a disk full part-way).
    if not complete:
        raise ScratchUnavailable("the scratch disk took only part of the processed copy")


def _without_alpha(image: Image.Image) -> Image.Image:
    if image.mode in _JPEG_READY_MODES:
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image if image.mode == "RGBA" else _replacing(image, image.convert("RGBA"))
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba)  # an RGBA mask is its alpha band
    return background


def _replacing(image: Image.Image, result: Image.Image) -> Image.Image:
    """`result`, with `image`'s pixels freed now rather than when the call returns."""
    if result is not image:
        image.close()
    return result


def _foreign_profile(icc_profile: bytes | None) -> ImageCms.ImageCmsProfile | None:
    """The embedded colour profile when the pixels need converting to sRGB."""
    if not icc_profile:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    except (OSError, ImageCms.PyCMSError):
        return None  # an unreadable profile is dropped like any other metadata
    if "srgb" in ImageCms.getProfileDescription(profile).lower():
        return None
    return profile


def _in_srgb(image: Image.Image, profile: ImageCms.ImageCmsProfile) -> Image.Image:
    """Converted in place, so no second copy of the pixels is made."""
    rgb = image if image.mode in ("RGB", "L") else _replacing(image, image.convert("RGB"))
    # A profile that does not fit the pixels is dropped like any other metadata.
    with contextlib.suppress(ImageCms.PyCMSError):
        ImageCms.profileToProfile(rgb, profile, _SRGB, inPlace=True)
    return rgb


def _turned_through_disk(image: Image.Image, fix: Image.Transpose, scratch: Path) -> Image.Image:
    """`image` turned by `fix` holding one copy of its pixels at a time: written raw to a
    scratch file and closed, then read back a band of rows at a time into the turned
    image. Closes `image`."""
    width, height = image.size
    mode = image.mode
    row_bytes = width * len(image.getbands())
    rows = max(1, _SPILL_BAND_BYTES // row_bytes)
    try:
        with tempfile.TemporaryFile(dir=scratch) as spill:
            # Pillow's own raw writer: the pixels go to the file without a bytes copy.
            ImageFile._save(
                image,
                spill,
                [ImageFile._Tile("raw", (0, 0, width, height), 0, mode)],
                bufsize=_SPILL_BAND_BYTES,
            )
            # Pillow's writer does not check for a short write (a disk full part-way).
            if os.fstat(spill.fileno()).st_size != row_bytes * height:
                raise ScratchUnavailable("the scratch disk took only part of the image")
            image.close()
            # Images made with color None are not zeroed first: every pixel is written.
            turned = Image.new(
                mode, (height, width) if fix in _SWAPS_AXES else (width, height), color=None
            )
            spill.seek(0)
            for top in range(0, height, rows):
                bottom = min(height, top + rows)
                band = Image.new(mode, (width, bottom - top), color=None)
                band.frombytes(spill.read(row_bytes * (bottom - top)))
                turned.paste(band.transpose(fix), _band_position(fix, top, bottom, height))
    except OSError as error:
        raise ScratchUnavailable(
            f"the image could not be turned through scratch: {error}"
        ) from None
    return turned


def _band_position(fix: Image.Transpose, top: int, bottom: int, height: int) -> tuple[int, int]:
    """Where the source's rows top..bottom land, turned by `fix`."""
    offset = height - bottom if fix in _REVERSES_ROWS else top
    return (offset, 0) if fix in _SWAPS_AXES else (0, offset)
