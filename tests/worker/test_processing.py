"""Processing functions on plain files (real Pillow and ffmpeg, no network)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from mediagate.processing.errors import ScratchUnavailable, UnacceptableMedia
from mediagate.processing.images import check_decoding_cost, sanitize_image
from mediagate.processing.sniff import check_magic
from mediagate.processing.video import ProcessingTimeout, VideoBudget, probe, sanitize_video
from tests.support import media

BUDGET = VideoBudget(30, 1, 60, 1080)
TINY_BUDGET = VideoBudget(0.01, 0, 0.01, 1080)


def _sanitized(tmp_path: Path, name: str) -> Image.Image:
    source = tmp_path / name
    source.write_bytes(media.fixture(name))
    out = tmp_path / f"out-{name}"
    sanitize_image(source, "image/jpeg", out)
    return Image.open(out)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_every_exif_orientation_comes_out_upright(tmp_path: Path, orientation: int) -> None:
    upright = _sanitized(tmp_path, "landscape_1.jpg")
    turned = _sanitized(tmp_path, f"landscape_{orientation}.jpg")
    assert turned.size == upright.size
    difference = ImageStat.Stat(
        ImageChops.difference(upright.convert("RGB"), turned.convert("RGB"))
    )
    assert max(difference.mean) < 8, difference.mean  # re-encoding noise only


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_large_image_turned_through_scratch_is_the_one_turned_in_memory(
    tmp_path: Path, orientation: int
) -> None:
    source = tmp_path / "source.jpg"
    source.write_bytes(media.fixture(f"landscape_{orientation}.jpg"))
    in_memory, through_disk = tmp_path / "memory" / "out.jpg", tmp_path / "disk" / "out.jpg"
    for out in (in_memory, through_disk):
        out.parent.mkdir()
    sanitize_image(source, "image/jpeg", in_memory)
    sanitize_image(source, "image/jpeg", through_disk, rotate_in_memory_max_pixels=0)
    assert through_disk.read_bytes() == in_memory.read_bytes()
    assert list(through_disk.parent.iterdir()) == [through_disk]  # no scratch file left


_ON_A_FULL_DISK = """
import resource, sys
from pathlib import Path
from mediagate.processing.images import sanitize_image

source, destination, in_memory_up_to = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    sanitize_image(source, "image/jpeg", destination, rotate_in_memory_max_pixels=in_memory_up_to)
except Exception as error:
    print(type(error).__name__)
"""


@pytest.mark.parametrize(
    ("fixture", "turn_in_memory_up_to"),
    [("landscape_6.jpg", 0), ("landscape_1.jpg", 10**9)],
    ids=["turning through scratch", "writing the processed copy"],
)
def test_a_scratch_disk_that_fills_up_is_not_the_files_fault(
    tmp_path: Path, fixture: str, turn_in_memory_up_to: int
) -> None:
    """Writes past RLIMIT_FSIZE stop short, then fail, as on a disk that fills up: the job
    must be retried (any error but UnacceptableMedia), never the upload rejected as
    corrupt nor a truncated copy stored. Pillow's writer takes a short write for
    success: the sizes are checked."""
    source = tmp_path / "source.jpg"
    source.write_bytes(media.fixture(fixture))
    failed = subprocess.run(
        [
            sys.executable,
            "-c",
            _ON_A_FULL_DISK,
            str(source),
            str(tmp_path / "out.jpg"),
            str(turn_in_memory_up_to),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert failed == ScratchUnavailable.__name__


_VIDEO_ON_A_FULL_DISK = """
import resource, sys
from pathlib import Path
from mediagate.processing.video import VideoBudget, sanitize_video

source, scratch = Path(sys.argv[1]), Path(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    budget = VideoBudget(30, 1, 60, 1080)
    sanitize_video(source, "video/mp4", scratch / "out.mp4", scratch / "poster.jpg", budget)
except Exception as error:
    print(type(error).__name__)
"""


def test_ffmpeg_on_a_scratch_disk_that_fills_up_is_not_the_files_fault(tmp_path: Path) -> None:
    source = media.make_video(tmp_path / "clip.mp4", seconds=1)
    failed = subprocess.run(
        [sys.executable, "-c", _VIDEO_ON_A_FULL_DISK, str(source), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert failed == ScratchUnavailable.__name__


def test_gps_exif_is_gone(tmp_path: Path) -> None:
    source = tmp_path / "phone.jpg"
    source.write_bytes(media.fixture("HMD_Nokia_8.3_5G.jpg"))
    with Image.open(source) as original:
        assert 0x8825 in original.getexif(), "the sample carries GPS"
    out = tmp_path / "out.jpg"
    sanitize_image(source, "image/jpeg", out)
    with Image.open(out) as clean:
        assert not clean.getexif() and "exif" not in clean.info


def test_decompression_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("L", (10_000, 8_000)).save(bomb)  # 80 MP of zeros: a few kB on disk
    assert bomb.stat().st_size < 200_000
    with pytest.raises(UnacceptableMedia, match="limit is 60000000"):
        sanitize_image(bomb, "image/png", tmp_path / "out.jpg")


# PNG declares 31 bits a side, JPEG and GIF 16, lossy WebP 14.
_FORMAT_MAXIMA = {
    "PNG": (2**31 - 1, 2**31 - 1),
    "JPEG": (65_535, 65_535),
    "GIF": (65_535, 65_535),
    "WEBP": (16_383, 16_383),
}
_CONTENT_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}


@pytest.mark.parametrize(
    ("fmt", "size"),
    [
        ("PNG", (60_000_001, 1)),  # just past the limit
        ("PNG", (20_000, 20_000)),  # 400 MP: past Pillow's own bomb threshold
        *_FORMAT_MAXIMA.items(),
    ],
    ids=[
        "just-past-the-limit",
        "past-pillows-threshold",
        *(f"{f}-maximum" for f in _FORMAT_MAXIMA),
    ],
)
def test_every_bomb_is_refused_from_its_header(
    tmp_path: Path, fmt: str, size: tuple[int, int]
) -> None:
    bomb = tmp_path / "bomb"
    bomb.write_bytes(media.declaring(fmt, size))
    with pytest.raises(UnacceptableMedia, match="limit is 60000000"):
        check_decoding_cost(bomb, _CONTENT_TYPES[fmt])


def test_an_image_at_the_pixel_limit_passes_the_header_check(tmp_path: Path) -> None:
    at_limit = tmp_path / "at-limit.png"
    at_limit.write_bytes(media.declaring("PNG", (7_500, 8_000)))
    check_decoding_cost(at_limit, "image/png")  # 60,000,000 pixels: allowed


def test_only_the_declared_format_is_decoded(tmp_path: Path) -> None:
    png = tmp_path / "a.jpg"
    png.write_bytes(media.image_bytes("PNG"))
    with pytest.raises(UnacceptableMedia, match="not a readable image/jpeg"):
        sanitize_image(png, "image/jpeg", tmp_path / "out.jpg")


def test_animated_gif_keeps_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 10), color) for color in ((255, 0, 0), (0, 0, 255))]
    gif = tmp_path / "a.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "out.jpg"
    assert sanitize_image(gif, "image/gif", out).width == 20
    with Image.open(out) as still:
        red, _green, blue = still.convert("RGB").getpixel((10, 5))  # type: ignore[misc]
        assert red > 200 and blue < 60
        assert getattr(still, "n_frames", 1) == 1


def test_magic_numbers() -> None:
    check_magic(media.image_bytes("JPEG")[:64], "image/jpeg")
    check_magic(media.image_bytes("WEBP")[:64], "image/webp")
    check_magic(media.image_bytes("GIF")[:64], "image/gif")
    for declared in ("image/png", "video/mp4", "video/webm"):
        with pytest.raises(UnacceptableMedia):
            check_magic(media.image_bytes("JPEG")[:64], declared)


@pytest.mark.parametrize(
    ("content", "declared"),
    [
        (b"#EXTM3U\n#EXTINF:1,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n", "video/mp4"),
        (b"ffconcat version 1.0\nfile /etc/hostname\n", "video/quicktime"),
        (b"#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n", "video/webm"),
    ],
    ids=["hls", "concat", "hls-network"],
)
def test_playlists_and_scripts_are_refused_by_the_demuxer(
    tmp_path: Path, content: bytes, declared: str
) -> None:
    """Even past the magic check, ffmpeg only opens the declared container via file:."""
    source = tmp_path / "input"
    source.write_bytes(content)
    with pytest.raises(UnacceptableMedia):
        sanitize_video(source, declared, tmp_path / "o.mp4", tmp_path / "p.jpg", BUDGET)
    assert not (tmp_path / "o.mp4").exists()


def test_ffmpeg_runs_under_the_time_limit(tmp_path: Path) -> None:
    clip = media.make_video(tmp_path / "in.webm", video=["-c:v", "libvpx"], audio=False)
    with pytest.raises(ProcessingTimeout):
        sanitize_video(clip, "video/webm", tmp_path / "o.mp4", tmp_path / "p.jpg", TINY_BUDGET)


def test_mov_with_rotation_reports_displayed_dimensions(tmp_path: Path) -> None:
    clip = media.make_video(tmp_path / "in.mp4", size="320x240", audio=False)
    rotated = tmp_path / "rotated.mov"
    import subprocess

    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(clip),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
            str(rotated),
        ],
        check=True,
    )
    out = tmp_path / "o.mp4"
    result = sanitize_video(rotated, "video/quicktime", out, tmp_path / "p.jpg", BUDGET)
    assert result.remuxed and (result.width, result.height) == (240, 320)
    assert Image.open(io.BytesIO((tmp_path / "p.jpg").read_bytes())).format == "JPEG"


def test_remux_drops_sei_user_data_where_cameras_hide_serials_and_gps(tmp_path: Path) -> None:
    marker = b"SERIAL-4711-GPS-52.52N"
    clip = media.make_video(
        tmp_path / "in.mp4",
        extra=[
            "-bsf:v",
            f"h264_metadata=sei_user_data=086f3693-b7b3-4f2c-9653-21492feee5b8+{marker.decode()}",
        ],
    )
    assert marker in clip.read_bytes()
    out = tmp_path / "o.mp4"
    result = sanitize_video(clip, "video/mp4", out, tmp_path / "p.jpg", BUDGET)
    assert result.remuxed
    assert marker not in out.read_bytes()
    assert marker not in (tmp_path / "p.jpg").read_bytes()


def _hevc_4k(path: Path, size: str = "3840x2160") -> Path:
    return media.make_video(
        path,
        size=size,
        seconds=0.4,
        audio=False,
        video=["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
    )


@pytest.mark.parametrize(
    ("size", "codec", "expected"),
    [
        ("3840x2160", "hevc", (1920, 1080)),
        ("3840x2160", "h264", (1920, 1080)),  # H.264 that would be remuxed is scaled too
        ("2160x3840", "hevc", (1080, 1920)),  # portrait: the shorter side is capped
        ("1280x720", "h264", (1280, 720)),  # below the cap: remuxed, untouched
    ],
)
def test_output_is_capped_at_the_configured_height(
    tmp_path: Path, size: str, codec: str, expected: tuple[int, int]
) -> None:
    source = tmp_path / "in.mp4"
    if codec == "hevc":
        _hevc_4k(source, size)
    else:
        media.make_video(source, size=size, seconds=0.4, audio=False)
    out = tmp_path / "o.mp4"
    result = sanitize_video(source, "video/mp4", out, tmp_path / "p.jpg", BUDGET)
    assert (result.width, result.height) == expected
    assert result.remuxed is (size == "1280x720")
    stream = probe(out, "video/mp4")
    assert stream.video_codec == "h264" and (stream.width, stream.height) == expected


def test_the_time_limit_grows_with_the_duration(tmp_path: Path) -> None:
    """No base time at all: only the seconds the video lasts earn ffmpeg its time."""
    clip = media.make_video(tmp_path / "in.webm", video=["-c:v", "libvpx"], seconds=2, audio=False)
    earned = VideoBudget(base_seconds=0.0, per_media_second=30, max_seconds=120, max_height=1080)
    assert earned.seconds_for(2.0) == 60
    result = sanitize_video(clip, "video/webm", tmp_path / "o.mp4", tmp_path / "p.jpg", earned)
    assert result.duration_seconds == pytest.approx(2, abs=0.1)
    capped = VideoBudget(base_seconds=0.0, per_media_second=30, max_seconds=0.01, max_height=1080)
    with pytest.raises(ProcessingTimeout):
        sanitize_video(clip, "video/webm", tmp_path / "o2.mp4", tmp_path / "p2.jpg", capped)


def test_frames_larger_than_8k_are_refused_before_decoding(tmp_path: Path) -> None:
    source = media.make_video(tmp_path / "in.mp4", size="8200x4400", seconds=0.08, audio=False)
    with pytest.raises(UnacceptableMedia, match="larger than 8K"):
        sanitize_video(source, "video/mp4", tmp_path / "o.mp4", tmp_path / "p.jpg", BUDGET)
    assert not (tmp_path / "o.mp4").exists()
