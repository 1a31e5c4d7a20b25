"""Sliding-window prefill with KV reuse: recomputed share, FLOPs, time and logits against full prefill per policy.

Model: random weights of the real Qwen2.5-VL class at Qwen2.5-VL-3B proportions, halved in width and cut to 8
layers: hidden 1024, 8 heads of 128, 2 KV heads, MLP 5504, vocab 151936 (tied), M-RoPE sections 16/24/24,
theta 1e6, tokens_per_second 2; its vision tower is a small random one (2 layers, width 128, merger out 1024)
whose output gives content-dependent visual embeddings (identical pixels give identical tokens).
Windows: the shared camera clips sampled at 2 fps to 448x252 (16x9 tokens per temporal patch, full grid),
16 frames (8 temporal patches, 1152 visual tokens) per window, sliding by 4 frames (2 temporal patches).
Codec inputs: per token `changed` from the codec change map (codecsight.signals.ChangeMap: codec candidates
checked against the pixels last encoded), OR-ed over the two frames of a temporal patch; a temporal patch is an
anchor when a key frame was decoded since the sample before it (the I-frame itself is rarely the sampled one).
Prompt: fixed random token ids (no tokenizer for random weights) shaped like the published prompt: a 20-token system
turn; questions of 28 tokens = an 8-token template prefix common to all ("Describe the frames and determine if they
show"), a 3-token category, a 17-token suffix ("Start your response with 'Yes' or 'No'." and the turn change).

Per clip the first window is prefilled in full, then each policy chains its own reuse over the following windows
(no periodic refresh within them). time_ratio: the policy's window prefill wall time over the full prefill of the
same window, both run in this process one after the other (1 thread); prefill_flops_fraction: LLM FLOPs executed
(codecsight.flops, causal pairs) over a full prefill's; logits_cosine: the first answer token's logits after the
question against those on the full prefill's KV. questions_4_vs_1_time_ratio: with the default policy, window
prefill + 4 standing questions (8 answer tokens each, --answer-tokens) over window prefill + 1.
Takes about 10 minutes on one core.
"""
from __future__ import annotations

import os
import time

from codecsight.bench import common_arguments, medium, write_json

SIZE = (252, 448)  # model input (height, width): 9 x 16 tokens of 28 px
FPS, WINDOW, STRIDE = 2.0, 16, 4  # sampling rate, frames per window, frames per slide
MEDIUM_VISION = dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, out_hidden_size=1024,
                     fullatt_block_indexes=[1], window_size=112, tokens_per_second=2)
CONFIG = ("qwen2_5_vl random weights: LLM 8 layers, hidden 1024, 8 heads x 128, 2 KV heads, MLP 5504, "
          "vocab 151936; windows of 16 frames at 2 fps sliding by 4, 448x252 input (144 tokens per temporal patch)")
POLICIES = [("none", 0.0), ("anchors", 0.1), ("anchors", 0.25), ("codec", 0.1), ("codec", 0.25),
            ("deviation", 0.1), ("deviation", 0.25), ("random", 0.1), ("random", 0.25)]
SYSTEM_LEN, TEMPLATE, CATEGORY, SUFFIX = 20, 8, 3, 17


def add_arguments(p):
    common_arguments(p)
    p.add_argument("--windows", type=int, default=4, help="windows per clip, the first prefilled in full")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--answer-tokens", type=int, default=8, help="answer length bound (default: %(default)s)")


def clip_segments(adapter, path: str, n_frames: int) -> list:
    """The clip's first n_frames sampled frames as segments (temporal patches) of visual embeddings from the
    model's own vision tower, with codec change flags and anchors."""
    import itertools

    import numpy as np
    import torch

    from codecsight.prefill.window import Segment
    from codecsight.signals import ChangeMap, Sampling, sample_frames
    from codecsight.vision.preprocess import video_pixel_values

    geometry = adapter.geometry
    cmap = ChangeMap(geometry, SIZE)
    frames, changes, keys = [], [], []
    for sampled in itertools.islice(sample_frames(path, Sampling(fps=FPS, size=SIZE)), n_frames):
        frames.append(sampled.rgb)
        changes.append(cmap.update(sampled))
        keys.append(sampled.signal.key_frame or "I" in sampled.source_types)
    n_frames = len(frames) - len(frames) % geometry.temporal
    pixels, grid = video_pixel_values(np.stack(frames[:n_frames]), geometry)
    with torch.inference_mode():
        embeds = adapter.model.model.visual(pixels, grid_thw=torch.tensor([grid])).pooler_output
    rows, cols = geometry.grid(*SIZE)
    coords = Segment.full_coords(rows, cols)
    segments = []
    for k, chunk in enumerate(embeds.split(rows * cols)):
        span = slice(k * geometry.temporal, (k + 1) * geometry.temporal)
        changed = torch.from_numpy(np.logical_or.reduce([c.changed for c in changes[span]]).reshape(-1))
        segments.append(Segment(k, chunk, coords, (rows, cols), seconds=k * geometry.temporal / FPS,
                                anchor=any(keys[span]), changed=changed))
    return segments


def run(args) -> int:
    import torch

    from codecsight.errors import ConfigError, SourceError
    from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
    from codecsight.prefill.engine import DEFAULT_BUDGET, DEFAULT_POLICY, WindowPrefill
    from codecsight.prefill.window import Window

    if args.windows < 2 or args.answer_tokens < 1:
        raise ConfigError("--windows must be >= 2 (the first is the full prefill) and --answer-tokens >= 1")
    torch.set_num_threads(args.threads)
    clips = sorted(f for f in os.listdir(args.videos) if f.endswith(".mp4")) if os.path.isdir(args.videos) else []
    if not clips:
        raise SourceError(f"no .mp4 clips in {args.videos}")
    adapter = Qwen25VLAdapter.tiny(seed=0, text_config=medium.TEXT, vision_config=MEDIUM_VISION)
    g = torch.Generator().manual_seed(0)
    system = torch.randint(0, 151643, (SYSTEM_LEN,), generator=g).tolist()
    template, suffix = (torch.randint(0, 151643, (n,), generator=g).tolist() for n in (TEMPLATE, SUFFIX))
    questions = [template + torch.randint(0, 151643, (CATEGORY,), generator=g).tolist() + suffix for _ in range(4)]
    yes_no = (9454, 2753)  # any two fixed ids: with random weights P(Yes) only has to be computed the same way
    full, default = ("full", 1.0), (DEFAULT_POLICY, DEFAULT_BUDGET)
    setups = [full] + POLICIES + ([default] if default not in POLICIES else [])
    acc = {s: dict(recomputed=0.0, flops=0, full_flops=0, time=0.0, full_time=0.0, cosine=0.0, n=0) for s in setups}
    q1 = q4 = 0.0
    n_frames = WINDOW + STRIDE * (args.windows - 1)
    for clip in clips:
        segments = clip_segments(adapter, os.path.join(args.videos, clip), n_frames)
        width, stride = WINDOW // adapter.geometry.temporal, STRIDE // adapter.geometry.temporal
        runners = {s: WindowPrefill(adapter, system, policy=s[0], budget=s[1], yes_no=yes_no) for s in setups}
        for w in range((len(segments) - width) // stride + 1):
            window = Window(segments[w * stride:w * stride + width], w)
            times, answers, stats = {}, {}, {}
            before = {s: runner.kv for s, runner in runners.items()}
            for s, runner in runners.items():
                start = time.perf_counter()
                kv, stats[s] = runner.prefill(window)
                times[s] = time.perf_counter() - start
                answers[s] = runner.ask(kv, questions[:1], max_new_tokens=1)[0].logits
            # the full prefill again, after the policies: the reference time is the mean of both runs
            start = time.perf_counter()
            runners[full].prefill(window)
            full_time = (times[full] + time.perf_counter() - start) / 2
            if w == 0:
                continue
            for s in setups:
                a = acc[s]
                a["recomputed"] += stats[s].recomputed_fraction
                a["flops"] += stats[s].flops
                a["full_flops"] += stats[s].full_flops
                a["time"] += times[s] if s != full else full_time
                a["full_time"] += full_time
                a["cosine"] += min(1.0, float(torch.cosine_similarity(answers[s], answers[full], dim=0)))
                a["n"] += 1
            # standing questions on the default policy, from the state before this window: prefill + 1 question,
            # + 4, + 1 again
            runner, after, timed = runners[default], runners[default].kv, []
            for qs in (questions[:1], questions, questions[:1]):
                runner.kv = before[default]
                start = time.perf_counter()
                runner.ask(runner.prefill(window)[0], qs, max_new_tokens=args.answer_tokens)
                timed.append(time.perf_counter() - start)
            runner.kv = after
            q1 += (timed[0] + timed[2]) / 2
            q4 += timed[1]
        print(f"{clip}: {w + 1} windows", flush=True)
    rows = []
    for (policy, budget), a in acc.items():
        rows.append(dict(policy=policy, budget=budget,
                         default=(policy, budget) == default,
                         recomputed_fraction=round(a["recomputed"] / a["n"], 4),
                         prefill_flops_fraction=round(a["flops"] / a["full_flops"], 4),
                         time_ratio=round(a["time"] / a["full_time"], 4),
                         logits_cosine=round(a["cosine"] / a["n"], 6)))
    result = {"config": CONFIG, "rows": rows, "questions_4_vs_1_time_ratio": round(q4 / q1, 4)}
    print(f"{'policy':<10} {'budget':>6} {'recomp':>7} {'flops':>7} {'time':>7} {'cosine':>9}")
    for r in rows:
        mark = " *" if r["default"] else ""
        print(f"{r['policy']:<10} {r['budget']:>6.2f} {r['recomputed_fraction']:>7.3f} "
              f"{r['prefill_flops_fraction']:>7.3f} {r['time_ratio']:>7.3f} {r['logits_cosine']:>9.5f}{mark}")
    print(f"4 questions vs 1: time x{result['questions_4_vs_1_time_ratio']:.3f}")
    write_json(args.json, result)
    return 0
