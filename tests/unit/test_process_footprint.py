"""What the long-running processes load: every module is resident memory, per process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageCms

# Piccolo's migration runner brings a code formatter (black), about 8 MiB: only
# `mediagate migrate` needs it.
MIGRATION_ONLY = {"black", "piccolo.apps.migrations.commands.forwards"}
# The worker verifies no token: PyJWT and the cryptography it loads are about 8 MiB.
API_ONLY = {"jwt", "mediagate.auth.tokens"}


def _loaded_by(entry: str) -> set[str]:
    code = f"import json, sys, {entry}; print(json.dumps(sorted(sys.modules)))"
    return set(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
    )


@pytest.mark.parametrize("entry", ["mediagate.worker.runner", "mediagate.api.app"])
def test_the_api_and_the_worker_leave_the_migration_machinery_out(entry: str) -> None:
    loaded = _loaded_by(entry)
    assert entry in loaded
    assert not loaded & MIGRATION_ONLY


def test_the_worker_leaves_the_token_machinery_out() -> None:
    loaded = _loaded_by("mediagate.worker.runner")
    assert not loaded & API_ONLY
    assert _loaded_by("mediagate.api.app") >= API_ONLY


# Three threads, each holding up to four 5 MiB buffers at a time (the SDK's upload parts),
# 300 buffers each: live at most 60 MiB.
_CHURN = """
import re, threading
from pathlib import Path
from mediagate.worker.runner import keep_large_buffers_off_the_heap

def peak():
    return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))

def churn():
    held = []
    for i in range(300):
        held.append(b"x" * (5 * 1024 * 1024 + i))
        if len(held) > 4:
            held.pop(0)
        transient = [bytearray(1000) for _ in range(50)]

keep_large_buffers_off_the_heap()
before = peak()
threads = [threading.Thread(target=churn) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print((peak() - before) // 1024)
"""


def test_the_worker_keeps_transfer_buffers_off_the_heap() -> None:
    """A heap carved by large buffers fragments and keeps growing (glibc raises its mmap
    threshold as they are freed); the worker's peak stays what it holds at once."""
    grown_mib = int(
        subprocess.run(
            [sys.executable, "-c", _CHURN], capture_output=True, text=True, check=True
        ).stdout
    )
    live_mib = 3 * 5 * 5  # up to five buffers per thread exist at once while a sixth is made
    assert grown_mib <= live_mib * 1.1, grown_mib


_DECODE = """
import re, sys
from pathlib import Path
from mediagate.processing.images import reuse_image_memory, sanitize_image

def peak():
    return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))

reuse_image_memory()  # as the worker's decoder does
before = peak()
sanitize_image(Path(sys.argv[1]), sys.argv[3], Path(sys.argv[2]))
print((peak() - before) // 1024)
"""
_PIXELS = (5000, 4000)  # 20 MP, above the size rotated in memory
_ONE_COPY_MIB = 5000 * 4000 * 4 // 2**20  # Pillow holds a pixel in 4 bytes


def _foreign_profile() -> bytes:
    """sRGB under another name: converted like any camera's profile, pixels kept."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return srgb.replace("sRGB".encode("utf-16-be"), "xRGB".encode("utf-16-be"))


def _photo(path: Path, *, orientation: int, icc_profile: bytes | None = None) -> Path:
    size = _PIXELS if orientation == 1 else _PIXELS[::-1]
    image = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize(size),
            Image.radial_gradient("L").resize(size),
            Image.linear_gradient("L").resize(size[::-1]).transpose(Image.Transpose.ROTATE_90),
        ],
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    image.save(path, "JPEG", quality=90, exif=exif.tobytes(), **extra)
    return path


def _decoding_growth_mib(source: Path, content_type: str = "image/jpeg") -> int:
    out = source.with_suffix(".out.jpg")
    completed = subprocess.run(
        [sys.executable, "-c", _DECODE, str(source), str(out), content_type],
        capture_output=True,
        text=True,
        check=True,
    )
    with Image.open(out) as result:
        assert result.size == _PIXELS
    return int(completed.stdout)


def test_a_large_photo_is_turned_and_colour_converted_holding_one_copy_of_its_pixels(
    tmp_path: Path,
) -> None:
    """Pillow cannot turn an image in place: in memory a rotated 20 MP photo needs twice
    what an upright one does. Through scratch, and with its profile applied in place, it
    needs what the upright one does."""
    upright = _decoding_growth_mib(_photo(tmp_path / "upright.jpg", orientation=1))
    assert upright >= _ONE_COPY_MIB * 0.9, upright
    rotated = _decoding_growth_mib(_photo(tmp_path / "rotated.jpg", orientation=6))
    profiled = _decoding_growth_mib(
        _photo(tmp_path / "profiled.jpg", orientation=8, icc_profile=_foreign_profile())
    )
    assert rotated <= upright + _ONE_COPY_MIB * 0.25, (upright, rotated)
    assert profiled <= upright + _ONE_COPY_MIB * 0.25, (upright, profiled)


def test_a_large_transparent_image_is_flattened_holding_two_copies_of_its_pixels(
    tmp_path: Path,
) -> None:
    """Its own pixels and the white background they are laid on; no converted copy nor
    separate alpha band besides."""
    bands = [Image.linear_gradient("L").resize(_PIXELS), Image.radial_gradient("L").resize(_PIXELS)]
    source = tmp_path / "transparent.png"
    Image.merge("RGBA", [*bands, *bands]).save(source, compress_level=1)
    growth = _decoding_growth_mib(source, "image/png")
    assert growth <= _ONE_COPY_MIB * 2.25, growth
