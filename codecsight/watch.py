"""Watch streams and answer standing questions: events as they happen, a summary at the end.

The main job. By default it runs the bundled reference VLM (offline, on CPU) with CodecSight's default method;
any supported hub id or local folder works with --model.
"""
from __future__ import annotations

import json
import os
import sys
import time

DEFAULT_QUESTION = "Is there a person?"  # one of the reference model's standing questions


def add_arguments(p):
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="file, rtsp:// or http(s):// URL, or - for stdin")
    p.add_argument("--ask", action="append", metavar="QUESTION",
                   help=f"a standing question (repeatable; default: {DEFAULT_QUESTION!r})")
    p.add_argument("--model", default=None, help="hub id or local folder (default: the bundled reference VLM)")
    p.add_argument("--method", default="codecsight", help="codecsight (default), full, or a peer baseline; "
                   "knobs as NAME:key=value,... (see codecsight.runtime.methods)")
    p.add_argument("--compare", default=None, metavar="METHOD", help="also run METHOD (e.g. full) on the same "
                   "windows and report agreement")
    p.add_argument("--fps", type=float, default=None, help="sampling rate (default: the model's, else 2)")
    p.add_argument("--window", type=int, default=None, help="window in sampled frames (default: the model's, else 16)")
    p.add_argument("--stride", type=int, default=None, help="stride in sampled frames (default: a fifth of the "
                   "window in whole temporal patches)")
    p.add_argument("--threshold", type=float, default=0.5, help="P(Yes) at or above which the answer is yes")
    p.add_argument("--size", type=int, default=None, help="square model input side in px (default: the model's)")
    p.add_argument("--answer-tokens", type=int, default=8, help="bound on each answer's text; 0: P(Yes) only, "
                   "no text (cheaper: the output layer is the largest single cost of answering)")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:N or auto "
                   "(default: %(default)s)")
    p.add_argument("--jsonl", metavar="PATH", help="write every event here, one JSON object per line")
    p.add_argument("--quiet", action="store_true", help="print only yes-events and the summary")


def default_stride(window: int, temporal: int) -> int:
    """A fifth of the window (the published 40 s / 8 s), in whole temporal patches, at least one."""
    return max(temporal, round(window / 5 / temporal) * temporal)


def run(args) -> int:
    from dataclasses import asdict

    from codecsight.errors import ConfigError
    from codecsight.models import load_adapter
    from codecsight.runtime import Engine, Question, method

    methods = [method(args.method)] + ([method(args.compare)] if args.compare else [])
    if len({m.name for m in methods}) < len(methods):
        raise ConfigError("--compare names the same method as --method")
    if not 0 <= args.threshold <= 1:
        raise ConfigError(f"threshold must be within [0, 1], got {args.threshold}")
    print(f"loading {args.model or 'the bundled reference VLM'} ...", file=sys.stderr, flush=True)
    adapter = load_adapter(args.model, device=args.device)
    defaults = (getattr(adapter.config, "codecsight", None) or {})
    t = adapter.geometry.temporal
    fps = args.fps or defaults.get("fps", 2.0)
    window = args.window or defaults.get("window", 16)
    stride = args.stride or defaults.get("stride") or default_stride(window, t)
    if window % t or stride % t:
        raise ConfigError(f"window ({window}) and stride ({stride}) must be multiples of {t} frames (temporal patch)")
    size = adapter.geometry.snap(args.size, args.size) if args.size else None
    questions = [Question(q, window, stride, args.threshold) for q in (args.ask or [DEFAULT_QUESTION])]
    engine = Engine(adapter, methods, questions, fps=fps, input_hw=size, answer_tokens=args.answer_tokens)
    names = _names(args.sources)
    for source, name in zip(args.sources, names):
        engine.add_stream(source, name)
    h, w = engine.input_hw
    print(f"{adapter.family} at {w}x{h}, {fps:g} fps, window {window} frames, stride {stride}; "
          f"method {methods[0].name}" + (f" (comparing with {methods[1].name})" if args.compare else ""),
          file=sys.stderr)

    out = open(args.jsonl, "w") if args.jsonl else None
    events = []

    def on_event(e):
        events.append(e)
        if out:
            out.write(json.dumps(asdict(e)) + "\n")
            out.flush()
        if e.method != methods[0].name or (args.quiet and not e.yes):
            return
        mark = "YES" if e.yes else "no "
        text = f"  -> {e.answer!r}" if e.answer else ""  # a model may answer with tokens that have no text
        print(f"[{e.stream}] {e.start:7.1f}-{e.end:7.1f}s  {mark}  p={e.p_yes:.2f}  {e.question}{text}", flush=True)

    def on_progress(reports):
        if sys.stderr.isatty():
            done = ", ".join(f"{r.name} {r.duration:.0f}s" for r in reports)
            print(f"\r  read: {done}", end="", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        reports = engine.run(on_event, on_progress)
    except KeyboardInterrupt:
        reports = engine.reports()
        print("\ninterrupted", file=sys.stderr)
    finally:
        if out:
            out.close()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(summary(reports, methods, events, time.perf_counter() - t0))
    return 1 if any(r.error for r in reports) and not events else 0


def _names(sources: list[str]) -> list[str]:
    stems = [os.path.splitext(os.path.basename(s))[0] or "stdin" for s in sources]
    return stems if len(set(stems)) == len(stems) else [f"{s}#{i}" for i, s in enumerate(stems)]


def agreement(events, main: str, other: str) -> tuple[int, int]:
    """(agreeing, compared) yes/no answers of two methods on the same stream, window and question."""
    ref = {(e.stream, e.window, e.question): e.yes for e in events if e.method == other}
    pairs = [(e.yes, ref[k]) for e in events if e.method == main
             and (k := (e.stream, e.window, e.question)) in ref]
    return sum(a == b for a, b in pairs), len(pairs)


def summary(reports, methods, events, elapsed: float) -> str:
    """A table per stream and method: windows, tokens encoded, ViT and LLM FLOPs against full compute, time."""
    lines = [f"\n{'stream':20s} {'method':14s} {'windows':>7s} {'skipped':>7s} {'tokens':>7s} {'ViT FLOPs':>9s} "
             f"{'LLM FLOPs':>9s} {'ViT s':>7s} {'LLM s':>7s} {'video s':>8s}"]
    for r in reports:
        for m in methods:
            c = r.counters.get(m.name)
            if c is None:
                continue
            frac = lambda a, b: f"{a / b:9.1%}" if b else f"{'-':>9s}"
            lines.append(f"{r.name:20s} {m.name:14s} {c.windows:7d} {c.windows_skipped:7d} "
                         f"{frac(c.tokens_encoded, c.tokens):>7s} {frac(c.vit_flops, c.vit_flops_full)} "
                         f"{frac(c.llm_flops, c.llm_flops_full)} {c.seconds['vit']:7.2f} "
                         f"{c.seconds['prefill'] + c.seconds['answer']:7.2f} {r.duration:8.1f}")
        if r.samples_dropped:
            lines.append(f"{'':20s} {r.samples_dropped} samples dropped (the stream outran the model)")
        if r.error:
            lines.append(f"{'':20s} stopped: {r.error}")
        for msg in r.messages:
            lines.append(f"{'':20s} note: {msg}")
    if len(methods) > 1:
        agree, n = agreement(events, methods[0].name, methods[1].name)
        if n:
            lines.append(f"\nagreement with {methods[1].name}: {agree}/{n} answers ({agree / n:.1%})")
    n_windows = sum(c.windows for r in reports for c in r.counters.values())
    lines.append(f"{len([e for e in events if e.method == methods[0].name])} answers in {elapsed:.1f} s "
                 f"({n_windows / elapsed:.2f} windows/s over all methods)")
    return "\n".join(lines)
