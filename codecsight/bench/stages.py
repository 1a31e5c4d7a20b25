"""Where the time goes: wall seconds per pipeline stage (plan, ViT, prefill, answers) of each method on one
stream, against full in the same run, on any device (`--device cuda`: the engine synchronises the GPU around
each stage, so a stage is charged its own work). `--profile PATH` also writes torch.profiler's table of the first
non-full method's operators, by CPU time.

Models: the bundled reference VLM, or a random-weight Qwen2.5-VL (medium: real proportions at a CPU's size;
large: the 7B model's shapes, for a GPU). Time is wall time of the whole run; decoding runs on a reader thread
beside the stages.
"""
from __future__ import annotations

import os

from codecsight.bench import DEFAULT_VIDEOS, device_name, write_json

METHODS = "full,codecsight,codecsight:vit_mode=isolated,codecsight:kv_policy=full,codecsight:select=all"


def add_arguments(p):
    p.add_argument("--json", help="write the results here")
    p.add_argument("--clip", default=os.path.join(DEFAULT_VIDEOS, "intel_one-by-one-person-detection.mp4"),
                   help="the stream to time (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of the stream to time, from its start")
    p.add_argument("--model", choices=("reference", "medium", "large"), default="reference",
                   help="the bundled reference VLM (its own input size), or a random-weight Qwen2.5-VL")
    p.add_argument("--size", type=int, default=448, help="square input side for the random-weight models")
    p.add_argument("--methods", default=METHODS, help="comma-separated; full is always run first")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--profile", metavar="PATH", help="write torch.profiler's operator table here")


def run(args) -> int:
    import torch

    from codecsight.bench.e2e import clip_prefix
    from codecsight.errors import ConfigError
    from codecsight.evaluation import run_method
    from codecsight.models import load_adapter
    from codecsight.models.base import resolve_device
    from codecsight.runtime import Question, method

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    specs = ["full"] + [m for m in args.methods.split(",") if m and m != "full"]
    for spec in specs:
        method(spec)  # a bad name fails before the model loads
    if not os.path.isfile(args.clip):
        raise ConfigError(f"{args.clip}: no such clip")
    if args.seconds <= 0:
        raise ConfigError(f"--seconds must be > 0, got {args.seconds}")
    if args.model == "reference":
        adapter = load_adapter(None, device=device)
        hw = adapter.default_input_hw()
    else:
        from codecsight.bench.medium import medium_adapter

        adapter = medium_adapter(size=args.model, device=device)
        hw = adapter.geometry.snap(args.size, args.size)
    src = clip_prefix(args.clip, args.seconds)
    questions = [Question("Is there a person?")]
    try:
        run_method(adapter, "full", [("s", src)], questions, 2.0, hw)  # warm-up: first calls pay for set-up
        rows, base = [], None
        for spec in specs:
            _, c, seconds, _ = run_method(adapter, spec, [("s", src)], questions, 2.0, hw)
            base = base or (c, seconds)
            rows.append({"method": spec, "seconds": seconds, "time_ratio": seconds / base[1],
                         "windows": c.windows, "stage_seconds": dict(c.seconds),
                         "flops_fraction": c.flops_fraction(base[0])})
            print(f"  {spec}: {seconds:.2f} s", flush=True)
        if args.profile and len(specs) > 1:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device != "cpu" else [])
            with profile(activities=activities) as prof:
                run_method(adapter, specs[1], [("s", src)], questions, 2.0, hw)
            with open(args.profile, "w") as f:
                f.write(prof.key_averages().table(sort_by="cpu_time_total", row_limit=60))
            print(f"wrote {args.profile}")
    finally:
        os.unlink(src)
    result = {"device": device_name(device), "model": args.model, "clip": os.path.basename(args.clip),
              "seconds_of_video": args.seconds, "input_hw": list(hw), "rows": rows}
    print_table(result)
    write_json(args.json, result)
    return 0


def print_table(result: dict):
    print(f"device: {result['device']}; model: {result['model']} at {result['input_hw'][0]}x{result['input_hw'][1]}; "
          f"{result['seconds_of_video']:g} s of {result['clip']}")
    stages = list(result["rows"][0]["stage_seconds"])
    print(f"{'method':34s} {'windows':>7s} {'FLOPs':>6s} {'time':>6s} {'s':>7s} " + " ".join(f"{s:>8s}" for s in stages))
    for r in result["rows"]:
        print(f"{r['method']:34s} {r['windows']:7d} {r['flops_fraction']:6.3f} {r['time_ratio']:6.3f} "
              f"{r['seconds']:7.2f} " + " ".join(f"{r['stage_seconds'][s]:8.2f}" for s in stages))
