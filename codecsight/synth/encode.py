"""Encode rendered frames with x264 the way a camera does: native frame rate, fixed GOP, optional B-frames, CRF."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class Encoding:
    fps: int
    gop: int  # frames between I-frames (fixed: no scene-cut I-frames, as cameras do)
    bframes: int
    crf: int
    preset: str = "veryfast"


def encode(frames: Iterable[np.ndarray], path: str, enc: Encoding, width: int, height: int) -> int:
    """Write an H.264 MP4; returns the number of frames. One x264 thread: the output is then byte-identical
    from run to run (and the machine is shared)."""
    import av

    n = 0
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=enc.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = enc.gop
        stream.codec_context.max_b_frames = enc.bframes
        stream.options = {
            "crf": str(enc.crf), "preset": enc.preset, "threads": "1",
            "x264-params": f"keyint={enc.gop}:min-keyint={enc.gop}:scenecut=0:bframes={enc.bframes}",
        }
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = n
            out.mux(stream.encode(frame))
            n += 1
        out.mux(stream.encode(None))
    return n
