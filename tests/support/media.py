"""Test media made on the spot: images, videos, EICAR, archives, noise."""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

from PIL import Image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"


def eicar() -> bytes:
    """The EICAR test string, assembled here so the repository does not carry it whole."""
    return b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR" + b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    color = (200, 30, 30, 128) if mode in ("RGBA", "LA") else (200, 30, 30)
    image = Image.new(mode, size, color[: len(mode)] if mode != "P" else 1)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_video(
    path: Path,
    *,
    size: str = "320x240",
    seconds: float = 2,
    video: list[str] | None = None,
    audio: bool = True,
    extra: list[str] | None = None,
    source: str = "testsrc2",
) -> Path:
    """Encode a synthetic clip with ffmpeg (h264/aac MP4 unless told otherwise)."""
    args = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"{source}=size={size}:rate=25",
    ]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440"]
    args += ["-t", str(seconds)]
    args += video or ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac"]
    args += [*(extra or []), str(path)]
    subprocess.run(args, check=True, timeout=300)
    return path


def noise_video(path: Path, target_bytes: int) -> Path:
    """An H.264 clip of random noise close to (and below) `target_bytes`."""
    frame_bytes = 1280 * 720 * 3 // 2  # lossless noise costs about a raw frame
    frames = max(1, int(target_bytes * 0.9) // frame_bytes)
    return make_video(
        path,
        size="1280x720",
        seconds=frames / 25,
        source="nullsrc",
        audio=False,
        video=[
            "-vf",
            "geq=random(1)*255:128:128",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
        ],
    )


def progressive_jpeg(size: tuple[int, int], extra_scans: int = 0) -> bytes:
    """A progressive JPEG of a gradient; `extra_scans` repeats its smallest scan, as an
    attacker's file of hundreds of scans does (each one costs the decoder a pass)."""
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(
        buffer, "JPEG", progressive=True, quality=90
    )
    data = buffer.getvalue()
    end = data.rfind(b"\xff\xd9")
    starts = []
    found = data.find(b"\xff\xda")
    while found != -1:
        starts.append(found)
        found = data.find(b"\xff\xda", found + 2)
    scans = [data[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)]
    smallest = min(scans[1:], key=len)
    return data[:end] + smallest * extra_scans + data[end:]


def png_bomb(size: tuple[int, int] = (10_000, 8_000)) -> bytes:
    """Mostly zeros: a few kB on disk, `size` pixels once decoded."""
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, "PNG")
    return buffer.getvalue()


def declaring(fmt: str, size: tuple[int, int]) -> bytes:
    """A tiny image whose header declares `size` pixels (up to the format's maximum):
    what a bomb looks like to anything that reads only its header."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, fmt)
    data = bytearray(buffer.getvalue())
    width, height = size
    if fmt == "PNG":  # IHDR: width, height as 32-bit big-endian, then its CRC
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    elif fmt == "JPEG":  # SOF0: precision, then height and width
        start = data.find(b"\xff\xc0")
        data[start + 5 : start + 9] = struct.pack(">HH", height, width)
    elif fmt == "GIF":  # the logical screen
        data[6:10] = struct.pack("<HH", width, height)
    elif fmt == "WEBP":  # VP8's frame header: 14-bit width and height
        start = data.find(b"VP8 ") + 14
        data[start : start + 4] = struct.pack("<HH", width, height)
    return bytes(data)


def padded_video(path: Path, total_bytes: int) -> Path:
    """A valid MP4 of exactly `total_bytes`: a short clip followed by a top-level `free`
    box (which players and ffmpeg skip) that is a hole in the file, so a large input
    costs no disk and no time to make."""
    make_video(path, seconds=1, audio=False)
    clip_bytes = path.stat().st_size
    padding = total_bytes - clip_bytes
    assert padding > 16, "the clip alone is larger than that"
    with path.open("r+b") as stream:
        stream.seek(clip_bytes)
        # size 1: the real size follows as 64 bits (a box may exceed 4 GiB).
        stream.write(struct.pack(">I4sQ", 1, b"free", padding))
        stream.truncate(total_bytes)
    return path
