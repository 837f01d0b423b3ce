"""Video sanitizing with ffmpeg (commands built with ffmpeg-python).

Only the declared container family is demuxed (mov/mp4, or matroska/webm), only the
`file` protocol is allowed, so playlists, concat scripts and network URLs are refused
before anything is read through them. Output is H.264/AAC MP4 with faststart and no
metadata; input that already is H.264/AAC in MP4/MOV is remuxed, not re-encoded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from mediagate.processing.errors import DISK_FULL_ERRNOS, ScratchUnavailable, UnacceptableMedia

PROBE_TIMEOUT = 60.0
# Larger frames than 8K UHD are refused before any is decoded.
MAX_INPUT_PIXELS = 7680 * 4320
POSTER_QUALITY = 3  # ffmpeg's -q:v scale for MJPEG: 2 (best) .. 31 (worst)
_DEMUXERS = {"video/mp4": "mov", "video/quicktime": "mov", "video/webm": "matroska"}
_SAFE_INPUT = {"protocol_whitelist": "file"}
_QUIET = ("-nostdin", "-hide_banner", "-loglevel", "error")
# How ffmpeg reports a disk that fills up (it prints strerror): the job is retried.
_DISK_FULL = tuple(os.strerror(code) for code in DISK_FULL_ERRNOS)


class ProcessingTimeout(UnacceptableMedia):
    """ffmpeg ran past the time limit."""


@dataclass(frozen=True, slots=True)
class VideoBudget:
    """How long ffmpeg may run on one video: `base_seconds` plus `per_media_second` for
    each second the video lasts, at most `max_seconds`; and the output's frame size."""

    base_seconds: float
    per_media_second: float
    max_seconds: float
    # The shorter side of the output frame (1080: a 4K video becomes 1080p, a portrait
    # one 1080x1920).
    max_height: int

    def seconds_for(self, duration: float) -> float:
        return min(self.base_seconds + self.per_media_second * duration, self.max_seconds)


@dataclass(frozen=True, slots=True)
class VideoResult:
    width: int
    height: int
    duration_seconds: float
    remuxed: bool


@dataclass(frozen=True, slots=True)
class _Probe:
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    duration_seconds: float


def _run(args: list[str], time_limit: float) -> str:
    try:
        finished = subprocess.run(
            args, capture_output=True, timeout=time_limit, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise ProcessingTimeout(f"{args[0]} took longer than {time_limit:.0f} s") from None
    if finished.returncode == -signal.SIGXCPU:  # the CPU limit its decoder process set
        raise ProcessingTimeout("the video takes too long to decode")
    if finished.returncode != 0:
        stderr = finished.stderr.decode(errors="replace")
        detail = (stderr.strip().splitlines() or ["?"])[-1]
        if finished.returncode == -signal.SIGXFSZ or any(text in stderr for text in _DISK_FULL):
            raise ScratchUnavailable(f"{args[0]} could not write its output: {detail}")
        raise UnacceptableMedia(f"{args[0]} could not process the video: {detail}")
    return finished.stdout.decode(errors="replace")


def probe(source: Path, declared_type: str) -> _Probe:
    """Read the streams with the declared demuxer only; refuse anything else."""
    demuxer = _DEMUXERS[declared_type]
    output = _run(
        [
            "ffprobe",
            *_QUIET[1:],
            "-protocol_whitelist",
            "file",
            "-f",
            demuxer,
            "-show_format",
            "-show_streams",
            "-of",
            "json",
            f"file:{source}",
        ],
        PROBE_TIMEOUT,
    )
    return _parse_probe(json.loads(output), declared_type)


def _parse_probe(report: dict[str, Any], declared_type: str) -> _Probe:
    streams = report.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None or not video.get("width") or not video.get("height"):
        raise UnacceptableMedia(f"the file has no video stream {declared_type} can carry")
    width, height = int(video["width"]), int(video["height"])
    if width * height > MAX_INPUT_PIXELS:
        raise UnacceptableMedia(f"the video's frames ({width}x{height}) are larger than 8K")
    if _rotation(video) % 180 == 90:
        width, height = height, width
    duration = float(report.get("format", {}).get("duration") or video.get("duration") or 0)
    return _Probe(
        video_codec=str(video.get("codec_name")),
        audio_codec=None if audio is None else str(audio.get("codec_name")),
        width=width,
        height=height,
        duration_seconds=duration,
    )


def _rotation(stream: dict[str, Any]) -> int:
    for side_data in stream.get("side_data_list", []):
        if "rotation" in side_data:
            return abs(int(float(side_data["rotation"])))
    return abs(int(stream.get("tags", {}).get("rotate", 0)))


def sanitize_video(
    source: Path, declared_type: str, destination: Path, poster: Path, budget: VideoBudget
) -> VideoResult:
    """Write a clean MP4 and a JPEG poster frame; raise UnacceptableMedia on bad input."""
    found = probe(source, declared_type)
    time_limit = budget.seconds_for(found.duration_seconds)
    scaled = output_size(found.width, found.height, budget.max_height)
    remux = (
        _DEMUXERS[declared_type] == "mov"
        and found.video_codec == "h264"
        and found.audio_codec in (None, "aac")
        and scaled == (found.width, found.height)
    )
    command = _convert_command(source, declared_type, destination, found, remux, scaled)
    _run(command, time_limit)
    result = probe(destination, "video/mp4")
    _run(_poster_command(destination, poster, result.duration_seconds), time_limit)
    return VideoResult(result.width, result.height, result.duration_seconds, remux)


def output_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """The frame scaled so its shorter side is at most `max_height`, both sides even
    (H.264 with 4:2:0 chroma needs them so)."""
    factor = min(1.0, max_height / min(width, height))
    if factor == 1.0:
        return width, height
    return max(2, round(width * factor / 2) * 2), max(2, round(height * factor / 2) * 2)


def _convert_command(
    source: Path,
    declared_type: str,
    destination: Path,
    found: _Probe,
    remux: bool,
    size: tuple[int, int],
) -> list[str]:
    stream = ffmpeg.input(f"file:{source}", f=_DEMUXERS[declared_type], **_SAFE_INPUT)
    streams = [stream["v:0"]] + ([stream["a:0"]] if found.audio_codec else [])
    if remux:
        # SEI NAL units (type 6) carry encoder and camera user data (serial numbers,
        # GPS on some devices): the copied H.264 stream leaves without them.
        codecs: dict[str, Any] = {"c": "copy", "bsf:v": "filter_units=remove_types=6"}
    else:
        codecs = {
            "vcodec": "libx264",
            "preset": "veryfast",
            "crf": 23,
            "pix_fmt": "yuv420p",
            # After the rotation ffmpeg applies, as probe's width and height are.
            "vf": f"scale={size[0] // 2 * 2}:{size[1] // 2 * 2}",
            "a53cc": 0,  # libx264 would carry the input's closed-caption side data over
            "acodec": "aac",
            "audio_bitrate": "128k",
        }
    output = ffmpeg.output(
        *streams,
        f"file:{destination}",
        f="mp4",
        movflags="+faststart",
        map_metadata=-1,
        map_chapters=-1,
        sn=None,
        dn=None,
        **codecs,
    )
    return _with_quiet(output.compile(overwrite_output=True))


def _poster_command(video: Path, poster: Path, duration: float) -> list[str]:
    stream = ffmpeg.input(f"file:{video}", ss=min(1.0, duration / 2), f="mov", **_SAFE_INPUT)
    output = stream.output(
        f"file:{poster}", vframes=1, f="image2", vcodec="mjpeg", **{"q:v": POSTER_QUALITY}
    )
    return _with_quiet(output.compile(overwrite_output=True))


def _with_quiet(args: list[str]) -> list[str]:
    return [args[0], *_QUIET, *args[1:]]
