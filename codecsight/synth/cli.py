"""Generate labelled synthetic surveillance streams (x264 videos + labels.jsonl), deterministic from a seed.

Layout of OUT: stream_NNNN.mp4 (one per `--video-minutes` of stream), stream_NNNN.json (the scene: style,
encoding and every object's keyframes, from which labels and auxiliary targets are recomputed) and labels.jsonl
with one row per (window, question): video (relative to OUT), start and end in seconds, question, type, answer.
Windows: sampled at --rate fps, --window samples long, sliding by --stride samples; both must be whole
Qwen temporal patches (2 frames). Defaults: 2 fps, 16 samples (8 s), stride 4 samples (2 s).
Split `heldout` uses background textures, palettes and colour-kind combinations that `train` never contains.
Split `anycolour` is `train` with every object in an arbitrary colour (none near a held-out combination's) and
colour questions left unlabelled while such an object is in view, for training kind from shape.
`--stumble P` makes a share P of episodes near-falls (an object leans and straightens up), hard negatives for "fall".
`--near P` makes a share P of episodes near-meets (two objects stop 8-20 px apart), hard negatives for "touch"; with
`--stumble`, a share P of the episodes that are not near-falls.
`--lie A,B` draws how long a fallen object lies from A-B seconds (default 3-10): short lies put a fall and its
get-up in one window ("fall?" Yes), long ones leave an object lying through whole windows ("fall?" No).
`--relabel` writes labels-w{W}-s{S}.jsonl for other windows and strides from the scene files of an existing OUT
(the videos stay as they are): `codecsight eval --labels OUT/labels-w8-s2.jsonl --window 8 --stride 2`.
"""
from __future__ import annotations

import json
import math
import os
import time

SPLITS = {"train": 0, "heldout": 1, "anycolour": 2}


def add_arguments(p):
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=10.0, help="total stream length")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", choices=sorted(SPLITS), default="train")
    p.add_argument("--video-minutes", type=float, default=2.0, help="length of each video")
    p.add_argument("--size", default="320x240", help="native frame size WxH")
    p.add_argument("--rate", type=float, default=2.0, help="sampling rate of the windows, fps")
    p.add_argument("--window", type=int, default=16, help="window length in samples")
    p.add_argument("--stride", type=int, default=4, help="window stride in samples")
    p.add_argument("--stumble", type=float, default=0.0, help="share of episodes that are near-falls (an object "
                   "leans and straightens up): hard negatives for 'fall' (default 0: the scenes of earlier versions)")
    p.add_argument("--near", type=float, default=0.0, help="share of episodes that are near-meets (two objects "
                   "approach and stop 8-20 px apart): hard negatives for 'touch' (default 0: the scenes of earlier "
                   "versions)")
    p.add_argument("--lie", default=None, metavar="A,B", help="seconds a fallen object lies before it gets up, "
                   "drawn uniformly from A-B (default 3,10: the scenes of earlier versions)")
    p.add_argument("--seen-colours", action="store_true", help="split heldout only: the same streams (motion, "
                   "noise, encoding) with every held-out colour-kind pair in a training colour of its kind "
                   "(synth.scene.seen_twin), to tell errors the unseen pairing causes from the rest")
    p.add_argument("--relabel", action="store_true", help="only label OUT's existing streams for --window and "
                   "--stride (into labels-wW-sS.jsonl)")


def run(args) -> int:
    from codecsight.errors import ConfigError

    w, _, h = args.size.partition("x")
    if not (w.isdigit() and h.isdigit()) or int(w) % 2 or int(h) % 2:
        raise ConfigError(f"--size must be WxH with even sides, got {args.size!r}")
    if args.window % 2 or args.stride % 2 or args.window <= 0 or args.stride <= 0:
        raise ConfigError("--window and --stride must be positive whole temporal patches (multiples of 2)")
    if args.minutes <= 0 or args.video_minutes <= 0:
        raise ConfigError("--minutes and --video-minutes must be positive")
    for name in ("stumble", "near"):
        if not 0 <= getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be a share in [0, 1), got {getattr(args, name)}")
    lie = lie_range(args.lie) if args.lie is not None else None
    if args.seen_colours and args.split != "heldout":
        raise ConfigError("--seen-colours changes only the held-out split's colour-kind pairs (use --split heldout)")
    if args.relabel:
        print(f"wrote {relabel(args.out, args.rate, args.window, args.stride)}")
        return 0
    generate(args.out, args.seed, args.minutes, args.split, args.video_minutes, (int(w), int(h)),
             args.rate, args.window, args.stride, stumble=args.stumble, seen_colours=args.seen_colours, lie=lie,
             near=args.near)
    return 0


def lie_range(text: str) -> tuple[float, float]:
    """An "A,B" --lie value: 0 < A <= B <= 600 seconds."""
    from codecsight.errors import ConfigError

    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--lie must be A,B in seconds, e.g. 3,10, got {text!r}") from None
    if not 0 < a <= b <= 600:
        raise ConfigError(f"--lie must have 0 < A <= B <= 600 seconds, got {text!r}")
    return a, b


def generate(out: str, seed: int, minutes: float, split: str = "train", video_minutes: float = 2.0,
             size: tuple[int, int] = (320, 240), rate: float = 2.0, window: int = 16, stride: int = 4,
             progress: bool = True, stumble: float = 0.0, seen_colours: bool = False,
             lie: tuple[float, float] | None = None, near: float = 0.0) -> str:
    """Write the videos and labels; returns the labels path. seen_colours: see `synth.scene.seen_twin` (the
    rng draws stay those of the plain split); lie, near: see `synth.scene.make_scene` (default scene.LIE, 0)."""
    import numpy as np

    from codecsight.synth.encode import encode
    from codecsight.synth.labels import window_labels
    from codecsight.synth.scene import LIE

    lie = lie or LIE
    os.makedirs(out, exist_ok=True)
    total = minutes * 60
    n_videos = max(1, math.ceil(total / (video_minutes * 60) - 1e-9))
    rows = []
    for i in range(n_videos):
        t0 = time.time()
        duration = min(video_minutes * 60, total - i * video_minutes * 60)
        scene, enc, renderer = draw_video(seed, split, i, duration, size, stumble=stumble, lie=lie, near=near,
                                          seen_colours=seen_colours)
        fps = scene.style.fps
        name = f"stream_{i:04d}"
        n_frames = round(duration * fps)
        encode((renderer.frame(n) for n in range(n_frames)), os.path.join(out, name + ".mp4"), enc, *size)
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({**scene.to_json(), "encoding": enc.__dict__, "frames": n_frames, "seed": seed,
                       "split": split, "index": i}, f)
        video_rows = window_labels(scene, rate, window, stride)
        rows += [{"video": name + ".mp4", **r} for r in video_rows]
        if progress:
            print(f"[synth] {name}: {duration:.0f} s at {fps} fps, GOP {enc.gop}, B-frames {enc.bframes}, "
                  f"CRF {enc.crf}, {len(scene.objects)} objects, {len(video_rows)} labels "
                  f"({time.time() - t0:.1f} s) [{i + 1}/{n_videos}]", flush=True)
    labels = os.path.join(out, "labels.jsonl")
    with open(labels, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"seed": seed, "minutes": minutes, "split": split, "rate": rate, "window": window,
                   "stride": stride, "size": list(size), "videos": n_videos, "stumble": stumble, "near": near,
                   "lie": list(lie), "seen_colours": seen_colours}, f, indent=1)
    return labels


def draw_video(seed: int, split: str, index: int, duration: float, size: tuple[int, int] = (320, 240),
               seen_colours: bool = False, **options):
    """Video `index` of a split: its scene, its encoding and the renderer of its frames, from the one rng every
    draw of that video comes from, in the order `generate` has always drawn them. options: `make_scene`'s."""
    import numpy as np

    from codecsight.synth.encode import Encoding
    from codecsight.synth.scene import Renderer, make_scene, seen_twin

    rng = np.random.default_rng([seed, SPLITS[split], index])
    scene = make_scene(rng, split, duration, *size, **options)
    if seen_colours:
        scene = seen_twin(scene)
    fps = scene.style.fps
    enc = Encoding(fps, gop=int(round(fps * rng.choice([1.0, 1.5, 2.0]))),
                   bframes=int(rng.choice([0, 2])), crf=int(rng.integers(23, 29)))
    return scene, enc, Renderer(scene, rng)


def relabel(out: str, rate: float, window: int, stride: int) -> str:
    """Labels of OUT's streams (from their scene files) for another window and stride; returns the labels path."""
    from codecsight.errors import ConfigError
    from codecsight.synth.labels import window_labels
    from codecsight.synth.scene import scene_from_json

    names = sorted(f for f in os.listdir(out) if f.startswith("stream_") and f.endswith(".json")) \
        if os.path.isdir(out) else []
    if not names:
        raise ConfigError(f"{out}: no stream_NNNN.json scene files to relabel (is it `codecsight synth` output?)")
    labels = os.path.join(out, f"labels-w{window}-s{stride}.jsonl")
    with open(labels, "w") as f:
        for name in names:
            with open(os.path.join(out, name)) as g:
                scene = scene_from_json(json.load(g))
            for r in window_labels(scene, rate, window, stride):
                f.write(json.dumps({"video": name[:-5] + ".mp4", **r}) + "\n")
    return labels
