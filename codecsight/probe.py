"""Inspect a video source: codec, GOP structure, changed-token shares per frame type, throughput.

Reads the stream once at the sampling rate, runs the change map on the chosen model's token grid, and prints
what a user needs to decide whether CodecSight will save work on this camera.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field


def add_arguments(p):
    p.add_argument("source", help="file path, rtsp:// or http(s):// URL, or - for a byte stream on stdin")
    p.add_argument("--fps", type=float, default=2.0, help="sampling rate (default: %(default)s)")
    p.add_argument("--size", type=int, default=448, help="square model input side in px (default: %(default)s)")
    p.add_argument("--geometry", default="qwen2_5_vl", help="token geometry: qwen2_5_vl, qwen3_vl, internvl3")
    p.add_argument("--seconds", type=float, default=None, help="stop after this much video")
    p.add_argument("--format", default=None, help="force a demuxer for raw pipes: mpegts, h264, hevc")
    p.add_argument("--heatmap", metavar="PNG", help="draw sampled frames with the changed tokens highlighted")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


@dataclass
class ProbeReport:
    source: str
    codec: str
    profile: str | None
    width: int
    height: int
    fps: float | None
    frames: int = 0
    duration_s: float = 0.0
    frame_types: dict = field(default_factory=dict)  # "I"/"P"/"B" -> count
    gop_lengths: list = field(default_factory=list)  # frames between key frames
    b_frames: bool = False
    sampled: int = 0
    changed_share: dict = field(default_factory=dict)  # sampled frame type -> mean share of changed tokens
    candidate_share: float = 0.0  # tokens with codec evidence (checked in pixels), over non-full sampled frames
    damaged_frames: int = 0
    decode_fps: float = 0.0
    realtime_factor: float = 0.0
    messages: list = field(default_factory=list)

    def gop_summary(self) -> str:
        if not self.gop_lengths:
            return "single GOP" if self.frames else "-"
        g = sorted(self.gop_lengths)
        return f"{len(g) + 1} GOPs, length {g[0]}-{g[-1]} (median {g[len(g) // 2]})"


def probe(source, fps=2.0, size=448, geometry="qwen2_5_vl", seconds=None, fmt=None, keep=0):
    """Run the reader and change map over `source`; returns the report and up to `keep` (rgb, change) samples
    spread over the stream for drawing."""
    from codecsight.errors import ConfigError
    from codecsight.geometry import GEOMETRIES
    from codecsight.signals import ChangeMap, DecodeOptions, Sampling, SignalReader, sample_frames

    if geometry not in GEOMETRIES:
        raise ConfigError(f"unknown geometry {geometry!r} (one of {', '.join(GEOMETRIES)})")
    geo = GEOMETRIES[geometry]
    side = geo.snap(size, size)
    reader = SignalReader(source, DecodeOptions(format=fmt))
    info = reader.info
    rep = ProbeReport(source=reader.name, codec=info.codec, profile=info.profile, width=info.width,
                      height=info.height, fps=info.fps)
    cmap = ChangeMap(geo, side)
    shares: dict[str, list[float]] = {}
    samples = []
    last_key, frame_no = None, 0
    t0 = time.perf_counter()
    try:
        for sampled in sample_frames(source, Sampling(fps, side), reader=reader):
            for ftype in sampled.source_types:
                rep.frame_types[ftype] = rep.frame_types.get(ftype, 0) + 1
                if ftype == "I":
                    if last_key is not None:
                        rep.gop_lengths.append(frame_no - last_key)
                    last_key = frame_no
                frame_no += 1
            rep.b_frames |= "B" in sampled.source_types
            change = cmap.update(sampled)
            sig = sampled.signal
            if not change.full:
                shares.setdefault(sig.frame_type, []).append(float(change.changed.mean()))
            samples.append((sampled.rgb, change))
            rep.duration_s = sig.pts
            if seconds is not None and sig.pts >= seconds:
                break
            if not sys.stderr.isatty() or len(samples) % 20:
                continue
            print(f"\r  {sig.pts:7.1f} s of video, {len(samples)} samples", end="", file=sys.stderr, flush=True)
    finally:
        reader.close()
    elapsed = time.perf_counter() - t0
    if sys.stderr.isatty():
        print("\r" + " " * 50 + "\r", end="", file=sys.stderr)
    rep.frames = reader.stats.frames
    rep.sampled = len(samples)
    rep.damaged_frames = reader.stats.damaged_frames
    rep.messages = list(reader.stats.messages)
    rep.changed_share = {k: sum(v) / len(v) for k, v in sorted(shares.items())}
    rep.candidate_share = cmap.candidates / cmap.partial_tokens if cmap.partial_tokens else 0.0
    rep.decode_fps = rep.frames / elapsed if elapsed else 0.0
    rep.realtime_factor = rep.duration_s / elapsed if elapsed else 0.0
    return rep, _spread(samples, keep)


def _spread(samples, keep: int):
    """Up to `keep` samples evenly over the stream: the first one, then frames that were not encoded in full
    (those are the ones that show what the change map decided)."""
    if not keep or not samples:
        return []
    partial = [s for s in samples[1:] if not s[1].full] or samples[1:]
    step = max(1, len(partial) / max(1, keep - 1))
    return [samples[0]] + [partial[int(i * step)] for i in range(min(keep - 1, len(partial)))]


def draw_heatmap(samples, path: str, token_px: int, title: str = ""):
    """A grid of sampled frames; changed tokens tinted red; frames encoded in full (key frames, unknown or
    damaged blocks) titled in orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(samples)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (rgb, change) in zip(axes.flat, samples):
        img = rgb.astype(np.float32) / 255
        if not change.full:
            mask = np.repeat(np.repeat(change.changed, token_px, 0), token_px, 1)
            img[mask] = 0.45 * img[mask] + 0.55 * np.array([1.0, 0.1, 0.1])
        ax.imshow(img)
        kind = "encoded in full" if change.full else f"{change.changed.mean():.0%} changed"
        ax.set_title(f"t={change.pts:.1f}s  {kind}", fontsize=9, color="darkorange" if change.full else "black")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(args) -> int:
    from codecsight.geometry import GEOMETRIES

    rep, samples = probe(args.source, args.fps, args.size, args.geometry, args.seconds, args.format,
                         keep=12 if args.heatmap else 0)
    if args.heatmap and samples:
        draw_heatmap(samples, args.heatmap, GEOMETRIES[args.geometry].token_px,
                     title=f"{rep.source}: changed tokens at {args.fps:g} fps (red)")
    if args.json:
        print(json.dumps(asdict(rep), indent=2))
        return 0
    types = ", ".join(f"{k} {v}" for k, v in sorted(rep.frame_types.items()))
    print(f"source      {rep.source}")
    print(f"codec       {rep.codec} ({rep.profile}), {rep.width}x{rep.height}, "
          f"{rep.fps:.2f} fps" if rep.fps else f"codec       {rep.codec}, {rep.width}x{rep.height}")
    print(f"frames      {rep.frames} in {rep.duration_s:.1f} s: {types}; B-frames {'yes' if rep.b_frames else 'no'}")
    print(f"GOP         {rep.gop_summary()}")
    print(f"sampled     {rep.sampled} frames at {args.fps:g} fps on a {args.size}px {args.geometry} token grid")
    for k, v in rep.changed_share.items():
        print(f"changed     {v:6.1%} of tokens on sampled {k}-frames")
    print(f"candidates  {rep.candidate_share:6.1%} of tokens had codec evidence and got a pixel check")
    if rep.damaged_frames:
        print(f"damaged     {rep.damaged_frames} frames decoded from damaged data (full compute)")
    print(f"throughput  {rep.decode_fps:.0f} frames/s decoded with signals, {rep.realtime_factor:.1f}x real time")
    if args.heatmap:
        print(f"heatmap     {args.heatmap}")
    return 0
