"""Small clips made by the tests themselves with PyAV's encoders: a static noisy scene with a moving square."""
from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

VIDEOS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "videos")


def shared_clip(name: str) -> str:
    return os.path.join(VIDEOS, f"intel_{name}-detection.mp4")


def scene(n: int, width: int = 320, height: int = 192, square: int = 48, speed: int = 6, seed: int = 0):
    """Frames of a static textured background with sensor noise and a bright square moving right from frame n//4.
    Yields (rgb, square box (x0, y0, x1, y1) or None)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (96 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.float32)
    base = np.stack([base, base * 0.9, base * 0.8], -1)
    for i in range(n):
        img = base + rng.normal(0, 1.5, base.shape)
        box = None
        if i >= n // 4:
            x0 = 8 + speed * (i - n // 4)
            y0 = height // 2 - square // 2
            if x0 + square < width:
                img[y0:y0 + square, x0:x0 + square] = (230, 40, 40)
                box = (x0, y0, x0 + square, y0 + square)
        yield np.clip(img, 0, 255).astype(np.uint8), box


def encode(path: str, frames, codec: str = "libx264", fps: int = 10, gop: int = 10, bframes: int = 0,
           fmt: str | None = None, options: dict | None = None) -> str:
    """Encode RGB frames. `fmt` picks the container (default from the file name); "h264"/"hevc" write Annex-B."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(path, "w", format=fmt) as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height = w, h
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        s.time_base = Fraction(1, fps)
        opts = {"g": str(gop), "bf": str(bframes)} if codec in ("libx264", "libx265") else {}
        if codec == "libx264":
            opts.update(preset="veryfast", crf="23")
        if codec == "libx265":
            opts = {"x265-params": f"keyint={gop}:min-keyint={gop}:bframes={bframes}:log-level=error",
                    "preset": "ultrafast"}
        opts.update(options or {})
        s.options = opts
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode())
    return path


def moving_square_clip(path: str, n: int = 40, **kw) -> str:
    return encode(path, (rgb for rgb, _ in scene(n)), **kw)
