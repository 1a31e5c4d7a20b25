"""Pruned-ViT benchmark: encoded tokens, ViT FLOPs and ViT wall time of codec-guided pruning against the full tower.

Clips: the shared camera clips, sampled at 2 fps to 448x448 (Qwen2.5-VL geometry: 16x16 tokens of 28 px, 2 frames
per temporal patch), cut into 16-frame windows (8 temporal patches). Keep masks: the codec change map
(codecsight.signals.ChangeMap) through the token plan (codecsight.plan.TokenPlanner, default PlanConfig).

Model: a "medium" random-weight Qwen2.5-VL whose ViT follows Qwen2.5-VL's proportions at half width and a quarter
of the depth: depth 8 (full attention in the last of each 8 layers, as 7/15/23/31 of 32), hidden 640, 10 heads
of 64 (Qwen2.5-VL: 16 of 80), gated MLP 1710 (= 640 x 3420/1280), 112 px windows, merger to 2048. The LLM is a
tiny stub that never runs. Full = the library's own tower on all patches of the window, one call; pruned = the
same tower on the kept tokens of the window's 8 temporal patches, one packed call (isolated mode), and the own
block loop attending to cached keys/values (context mode). Both include the same preprocessing of all frames.

vit_flops_fraction: pruned / full FLOPs of the tower and merger (codecsight.flops), as the timed calls run them.
vit_time_ratio: pruned / full wall time, measured interleaved per window (best of --repeats), summed over windows.
Target: vit_time_ratio <= 1.3 x vit_flops_fraction + 0.05 per clip. kept_cosine: mean cosine of the encoded tokens'
embeddings to the full encoding over partial temporal patches (isolated, and under "context"); random weights, so
indicative only, not accuracy.
"""
from __future__ import annotations

import os
import time

from codecsight.bench import common_arguments, medium, write_json

WINDOW = 16  # frames
SIZE = (448, 448)
CONFIG_TEXT = ("Qwen2.5-VL ViT, medium random weights: depth 8 (full attention at layer 7, else 112 px windows), "
               "hidden 640, 10 heads, gated MLP 1710, merger 2560->1024; 2 fps, 448x448, 16-frame windows, "
               "masks: ChangeMap + TokenPlanner defaults")


def add_arguments(p):
    common_arguments(p)
    p.add_argument("--windows", type=int, default=3, help="16-frame windows per clip, from its start (default 3)")
    p.add_argument("--repeats", type=int, default=2, help="timing repeats per window; the best is kept")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")


def clip_windows(path: str, n_windows: int):
    """The first n_windows 16-frame windows of a clip: per window, the frames of each temporal patch and the
    plan's keep mask."""
    from codecsight.geometry import QWEN2_5_VL
    from codecsight.plan import planned_samples

    patches, pending = [], []
    for sampled, _, plan in planned_samples(path, QWEN2_5_VL, SIZE):
        pending.append(sampled.rgb)
        if plan is not None:
            patches.append((pending, plan.keep))
            pending = []
        if len(patches) == n_windows * WINDOW // QWEN2_5_VL.temporal:
            break
    per = WINDOW // QWEN2_5_VL.temporal
    return [patches[i:i + per] for i in range(0, len(patches) - per + 1, per)]


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_clip(adapter, path: str, n_windows: int, repeats: int) -> dict:
    import numpy as np
    import torch.nn.functional as F

    from codecsight.vision.encoder import EncodeRequest, PrunedViT

    windows = clip_windows(path, n_windows)
    encoders = {mode: PrunedViT(adapter, mode) for mode in ("isolated", "context")}
    seconds = dict.fromkeys(("full", *encoders), 0.0)
    flops = dict.fromkeys(seconds, 0)
    kept = tokens = 0
    cosines = {mode: [] for mode in encoders}
    for window in windows:
        frames = np.stack([f for fs, _ in window for f in fs])
        requests = [EncodeRequest("clip", np.stack(fs), keep) for fs, keep in window]
        best = dict.fromkeys(seconds, float("inf"))
        results = {}
        for repeat in range(repeats):  # interleaved; the best of each
            t, (full, _) = _timed(lambda: adapter.vision_reference(frames))
            best["full"] = min(best["full"], t)
            for mode, vit in encoders.items():
                state = vit.snapshot()
                t, results[mode] = _timed(lambda: vit.encode(requests))
                best[mode] = min(best[mode], t)
                if repeat < repeats - 1:  # every repeat starts from the same caches; the last one moves on
                    vit.restore(state)
        for key in seconds:
            seconds[key] += best[key]
        grid = results["isolated"][0].grid
        flops["full"] += _vit_flops(adapter.config, [np.ones(grid, bool)] * len(requests), False)
        for mode, res in results.items():
            masks = [_mask(r) for r in res]
            flops[mode] += _vit_flops(adapter.config, masks, mode == "context")
        n = grid[0] * grid[1]
        kept, tokens = kept + sum(len(r.token_index) for r in results["isolated"]), tokens + n * len(requests)
        for mode, res in results.items():
            for i, r in enumerate(res):
                if 0 < len(r.token_index) < n:
                    ref = full[i * n:(i + 1) * n][r.token_index]
                    cosines[mode].append(F.cosine_similarity(r.embeds, ref, dim=-1).mean().item())
    frac = {k: flops[k] / flops["full"] for k in encoders}
    ratio = {k: seconds[k] / seconds["full"] for k in encoders}
    return {
        "name": os.path.splitext(os.path.basename(path))[0],
        "tokens_encoded_fraction": kept / tokens,
        "vit_flops_fraction": frac["isolated"],
        "vit_time_ratio": ratio["isolated"],
        "target": 1.3 * frac["isolated"] + 0.05,
        "meets_target": ratio["isolated"] <= 1.3 * frac["isolated"] + 0.05,
        "kept_cosine": float(np.mean(cosines["isolated"])) if cosines["isolated"] else 1.0,
        "context": {"vit_flops_fraction": frac["context"], "vit_time_ratio": ratio["context"],
                    "kept_cosine": float(np.mean(cosines["context"])) if cosines["context"] else 1.0},
        "windows": len(windows),
        "full_seconds": seconds["full"],
    }


def _mask(result):
    import numpy as np

    mask = np.zeros(result.grid[0] * result.grid[1], bool)
    mask[result.token_index.numpy()] = True
    return mask.reshape(result.grid)


def _vit_flops(config, masks, context: bool) -> int:
    from codecsight.flops import count_flops, vision_work

    f = count_flops(config, vision_work(config, masks, context=context))
    return f.vit + f.merger


def run(args) -> int:
    import torch

    from codecsight.errors import SourceError
    from codecsight.flops import flop_counter_max_rel_error
    from codecsight.models.internvl3 import InternVL3Adapter
    from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
    from codecsight.models.qwen3_vl import Qwen3VLAdapter

    torch.set_num_threads(args.threads)
    clips = sorted(f for f in os.listdir(args.videos) if f.endswith(".mp4")) if os.path.isdir(args.videos) else []
    if not clips:
        raise SourceError(f"no .mp4 clips in {args.videos}")
    adapter = Qwen25VLAdapter.tiny(seed=0, vision_config=medium.VISION)
    rows = [bench_clip(adapter, os.path.join(args.videos, c), args.windows, args.repeats) for c in clips]
    flop_error = flop_counter_max_rel_error(cls.tiny(seed=0).model for cls in
                                            (Qwen25VLAdapter, Qwen3VLAdapter, InternVL3Adapter))
    print(f"{'clip':38s} {'tokens':>7s} {'FLOPs':>7s} {'time':>7s} {'target':>7s} {'ok':>3s} "
          f"{'cos':>6s} {'ctx FLOPs':>9s} {'ctx time':>8s} {'ctx cos':>7s} {'full s':>7s}")
    for r in rows:
        c = r["context"]
        print(f"{r['name']:38s} {r['tokens_encoded_fraction']:7.3f} {r['vit_flops_fraction']:7.3f} "
              f"{r['vit_time_ratio']:7.3f} {r['target']:7.3f} {'yes' if r['meets_target'] else 'NO':>3s} "
              f"{r['kept_cosine']:6.3f} {c['vit_flops_fraction']:9.3f} {c['vit_time_ratio']:8.3f} "
              f"{c['kept_cosine']:7.3f} {r['full_seconds']:7.2f}")
    print(f"FLOP counter max relative error: {flop_error:.4f}")
    write_json(args.json, {"config": CONFIG_TEXT, "clips": rows, "flop_counter_max_rel_error": flop_error})
    return 0
