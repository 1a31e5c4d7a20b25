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


def yuv420p(rgb: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) uint8 -> planar YUV 4:2:0 (H * 3 / 2, W), BT.601 limited range, as cameras send. Our own
    conversion keeps the encoder's input a pure function of the seed, whatever swscale build or state."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + 0.2568 * r + 0.5041 * g + 0.0979 * b
    u = 128 - 0.1482 * r - 0.2910 * g + 0.4392 * b
    v = 128 + 0.4392 * r - 0.3678 * g - 0.0714 * b
    h, w = y.shape
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).reshape(h // 4, w)
    return np.clip(np.rint(np.concatenate([y, sub(u), sub(v)])), 0, 255).astype(np.uint8)


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
            frame = av.VideoFrame.from_ndarray(yuv420p(rgb), format="yuv420p")
            frame.pts = n
            out.mux(stream.encode(frame))
            n += 1
        out.mux(stream.encode(None))
    return n
