"""Opening a stream source: a file, an rtsp:// or http(s):// URL, or a readable byte stream (pipe, socket).

Everything that can go wrong while opening becomes a typed error that names the source.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

import av

from codecsight.errors import SourceError, UnsupportedCodecError

SUPPORTED_CODECS = ("h264", "hevc")
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "tcp://", "udp://", "srt://")


@dataclass(frozen=True)
class StreamInfo:
    codec: str
    profile: str | None
    width: int
    height: int
    fps: float | None  # nominal rate from the container; None where it does not say
    frames: int | None  # from the container header; None for live streams
    duration: float | None


def describe(source) -> str:
    return source if isinstance(source, str) else getattr(source, "name", type(source).__name__)


def open_container(source: str | BinaryIO, timeout: float = 10.0, format: str | None = None):
    """Open `source` with PyAV. `timeout` bounds connecting and each network read (seconds), so a stream that
    stops raises instead of hanging. `format` forces a demuxer ("mpegts", "h264", "hevc") for raw pipes."""
    name = describe(source)
    options = {}
    if isinstance(source, str):
        if source == "-":
            source = os.fdopen(os.dup(0), "rb")
        elif source.startswith(NETWORK_SCHEMES):
            if source.startswith("rtsp"):
                options["rtsp_transport"] = "tcp"
        elif not os.path.exists(source):
            raise SourceError(f"{name}: no such file")
        elif os.path.getsize(source) == 0:
            raise SourceError(f"{name}: file is empty")
    try:
        return av.open(source, mode="r", format=format, options=options, timeout=(timeout, timeout))
    except av.error.TimeoutError as e:
        raise SourceError(f"{name}: timed out after {timeout:g} s while opening") from e
    except (av.error.FFmpegError, OSError) as e:
        raise SourceError(f"{name}: cannot open ({e})") from e


def video_stream(container, name: str):
    """The first video stream, checked to be a codec CodecSight reads signals from."""
    if not container.streams.video:
        raise SourceError(f"{name}: no video stream")
    stream = container.streams.video[0]
    codec = stream.codec_context.name
    if codec not in SUPPORTED_CODECS:
        raise UnsupportedCodecError(
            f"{name}: codec {codec!r} is not supported (CodecSight reads {', '.join(SUPPORTED_CODECS)})")
    return stream


def stream_info(stream) -> StreamInfo:
    cc = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate
    duration = float(stream.duration * stream.time_base) if stream.duration else None
    return StreamInfo(codec=cc.name, profile=cc.profile, width=cc.width, height=cc.height,
                      fps=float(rate) if rate else None, frames=stream.frames or None, duration=duration)
