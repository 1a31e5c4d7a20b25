"""End-to-end benchmark against peers: F1 and cost of every method on the labelled streams, throughput on real clips.

Every method runs through the same runtime (codecsight.runtime) in one run: the labelled benchmark streams
(held-out split of `codecsight synth`, generated here unless --data names a folder) with the bundled reference VLM
give window-level F1; the shared camera clips give throughput. Fractions and ratios are against `full` in the
same run. A PNG plots F1 against the FLOPs fraction, one point per method and knob setting.
"""
from __future__ import annotations

import os

from codecsight.bench import DEFAULT_VIDEOS, device_name, write_json
import tempfile

BUDGET_MATCHED = ("uniform", "evs")  # run at the token share CodecSight achieves in the same run
METHODS = ["full", "codecsight", "codecsight-vit", "codecsight-kv", "codecsight-cached", "uniform", "evs", "pixel",
           "stc", "reuse-none", "cacheblend", "vlcache", "codecsight:kv_budget=0.25",
           "codecsight:vit_mode=isolated", "codecsight:sub_blocks=1", "codecsight:linger=0"]


def add_arguments(p):
    p.add_argument("--json", help="write the results here")
    p.add_argument("--plot", help="PNG of F1 against FLOPs fraction (default: next to --json)")
    p.add_argument("--data", help="labelled streams (codecsight synth output); default: generate the held-out split")
    p.add_argument("--minutes", type=float, default=4.0, help="minutes of held-out streams to generate")
    p.add_argument("--model", default=None, help="hub id or folder (default: the bundled reference VLM)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (full is always run)")
    p.add_argument("--videos", default=DEFAULT_VIDEOS, help="real clips for throughput (default: %(default)s)")
    p.add_argument("--clip-seconds", type=float, default=30.0, help="seconds of each clip to time")
    p.add_argument("--static-streams", type=int, default=2,
                   help="also time this many of the labelled (static-camera) streams with the clip model")
    p.add_argument("--clip-model", choices=("medium", "large", "reference"), default="medium",
                   help="model for the real-clip throughput: medium random weights with real proportions "
                        "(compute dominates, as for real models), large (Qwen2.5-VL-7B shapes, random weights: for "
                        "a GPU), or the reference VLM")
    p.add_argument("--clip-size", type=int, default=336, help="square input side for the real clips")
    p.add_argument("--clip-methods", default="full,codecsight,codecsight:sub_blocks=1,uniform,evs,pixel,stc,cacheblend",
                   help="methods timed on the real clips (full first)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")


def run(args) -> int:
    import torch

    from codecsight.evaluation import evaluate, meta_defaults, read_labels
    from codecsight.models import load_adapter
    from codecsight.models.base import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # full first (the base of every fraction), codecsight next: the budget-matched peers take its token share
    asked = [m for m in args.methods.split(",") if m and m not in ("full", "codecsight")]
    specs = ["full", "codecsight"] + asked
    adapter = load_adapter(args.model, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from codecsight.synth.cli import generate

            data = os.path.join(tmp, "heldout")
            print(f"generating {args.minutes:g} min of held-out streams ...", flush=True)
            generate(data, seed=1, minutes=args.minutes, split="heldout")
        labels_path = os.path.join(data, "labels.jsonl")
        labels, meta = read_labels(labels_path), meta_defaults(labels_path)
        rows, base = [], None
        for spec in specs:
            if spec in BUDGET_MATCHED and len(rows) > 1:
                spec = f"{spec}:retention={max(0.05, round(rows[1]['tokens_fraction'], 3))}"
            print(f"{spec} on {len({r['video'] for r in labels})} labelled streams ...", flush=True)
            row, cost = evaluate(adapter, labels, data, spec, meta["rate"], meta["window"], meta["stride"],
                                 base=base)
            base = base or cost
            del row["sweep"]
            rows.append(row)
            print(f"  F1 {row['f1']:.3f}  FLOPs {row['flops_fraction']:.3f}  time {row['time_ratio']:.3f}", flush=True)
        clip_model = adapter
        if args.clip_model != "reference":
            from codecsight.bench.medium import medium_adapter

            print(f"making the {args.clip_model} random-weight model on {device} ...", flush=True)
            clip_model = medium_adapter(size=args.clip_model, device=device)
        side = clip_model.geometry.snap(args.clip_size, args.clip_size)
        videos = sorted({r["video"] for r in labels})[:max(0, args.static_streams)]
        clips = [(os.path.join(args.videos, f), "real") for f in _clips(args.videos)] + \
                [(os.path.join(data, v), "static") for v in videos]
        print(f"throughput of {len(clips)} clips with the {args.clip_model} model ...", flush=True)
        throughput = clip_throughput(clip_model, [m for m in args.clip_methods.split(",") if m], clips,
                                     args.clip_seconds, side)
    from codecsight.bench.medium import SIZES

    result = {"model": args.model or "bundled reference VLM", "device": device_name(device),
              "data": args.data or f"generated held-out, "
              f"{args.minutes:g} min, seed 1", "rows": rows, "clips": throughput,
              "clip_means": clip_means(throughput),
              "clip_model": SIZES[args.clip_model][2] if args.clip_model in SIZES else "the reference VLM",
              "notes": "fractions and ratios against full in the same run; F1 is window-level, Yes = positive; "
                       "time is wall time of the whole pipeline (decode, ViT, prefill, answers)"}
    print_table(result)
    write_json(args.json, result)
    plot = args.plot or (os.path.splitext(args.json)[0] + ".png" if args.json else None)
    if plot:
        draw(rows, plot)
        print(f"wrote {plot}")
    return 0


def _clips(videos: str) -> list[str]:
    return sorted(f for f in os.listdir(videos) if f.endswith(".mp4")) if os.path.isdir(videos) else []


def clip_throughput(adapter, specs, clips: list[tuple[str, str]], seconds: float, input_hw) -> list[dict]:
    """Windows per second of each method on (path, kind) clips, no labels; kind: "real" camera clips or
    "static" labelled streams. Against full in the same run."""
    from codecsight.evaluation import run_method
    from codecsight.runtime import Question

    out = []
    for path, kind in clips:
        name = os.path.basename(path)
        src = clip_prefix(path, seconds)
        base = None
        for spec in specs:
            _, c, elapsed, _ = run_method(adapter, spec, [(name, src)], [Question("Is there a person?")], 2.0,
                                          input_hw)
            base = base or (c, elapsed)
            out.append({"clip": name, "kind": kind, "method": spec, "windows_per_s": c.windows / elapsed,
                        "time_ratio": elapsed / base[1], "tokens_fraction": c.tokens_encoded / max(1, c.tokens),
                        "flops_fraction": c.flops_fraction(base[0])})
            print(f"  {name} ({kind}) {spec}: {c.windows} windows in {elapsed:.1f} s, time {out[-1]['time_ratio']:.3f}",
                  flush=True)
        os.unlink(src)
    return out


def clip_means(clips: list[dict]) -> list[dict]:
    """Mean time ratio and FLOPs fraction of each method over the clips of each kind (real, static)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in clips:
        groups.setdefault((c["kind"], c["method"]), []).append(c)
    return [{"kind": kind, "method": method, "clips": len(g),
             "time_ratio": sum(c["time_ratio"] for c in g) / len(g),
             "flops_fraction": sum(c["flops_fraction"] for c in g) / len(g)} for (kind, method), g in groups.items()]


def clip_prefix(path: str, seconds: float) -> str:
    """The first `seconds` of a clip, stream-copied (no re-encode) to a temporary MPEG-TS file."""
    import av

    fd, dst = tempfile.mkstemp(suffix=".ts")
    os.close(fd)
    with av.open(path) as inp, av.open(dst, "w", format="mpegts") as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        for packet in inp.demux(s):
            if packet.dts is None:
                continue
            if packet.pts is not None and packet.pts * s.time_base > seconds:
                break
            packet.stream = o
            out.mux(packet)
    return dst


def print_table(result: dict):
    print(f"device: {result['device']}")
    head = f"{'method':32s} {'F1':>6s} {'vs full [95%]':>22s} {'P':>6s} {'R':>6s} {'AUC':>6s} {'tokens':>7s} " \
           f"{'FLOPs':>7s} {'ViT':>6s} {'LLM':>6s} {'time':>6s} {'t ViT':>6s} {'t pre':>6s} {'t ans':>6s} {'win/s':>6s}"
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        stage = r.get("stage_time_ratio", {})
        ranked = f"{r['auc']:6.3f}" if r.get("auc") is not None else f"{'-':>6s}"
        delta = "{:+.3f} [{:+.3f},{:+.3f}]".format(r["f1_delta"], *r["f1_delta_ci"]) if "f1_delta" in r else "-"
        print(f"{r['method']:32s} {r['f1']:6.3f} {delta:>22s} {r['precision']:6.3f} {r['recall']:6.3f} {ranked} "
              f"{r['tokens_fraction']:7.3f} "
              f"{r['flops_fraction']:7.3f} {r['vit_flops_fraction']:6.3f} {r['llm_flops_fraction']:6.3f} "
              f"{r['time_ratio']:6.3f} {stage.get('vit', 0):6.3f} {stage.get('prefill', 0):6.3f} "
              f"{stage.get('answer', 0):6.3f} {r['windows_per_s']:6.2f}")
    if result["clips"]:
        print(f"\nthroughput (real camera clips, then labelled static-camera streams), {result['clip_model']}")
        print(f"{'clip':40s} {'method':32s} {'win/s':>6s} {'time':>6s} {'tokens':>7s} {'FLOPs':>7s}")
        for r in result["clips"]:
            print(f"{r['clip']:40s} {r['method']:32s} {r['windows_per_s']:6.2f} {r['time_ratio']:6.3f} "
                  f"{r['tokens_fraction']:7.3f} {r['flops_fraction']:7.3f}")
        print(f"\n{'mean over clips':40s} {'method':32s} {'time':>6s} {'FLOPs':>7s}")
        for r in result["clip_means"]:
            print(f"{r['kind'] + ' (' + str(r['clips']) + ')':40s} {r['method']:32s} {r['time_ratio']:6.3f} "
                  f"{r['flops_fraction']:7.3f}")


def draw(rows: list[dict], path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in rows:
        ours = r["method"].startswith("codecsight")
        colour = "tab:red" if ours else "tab:blue" if r["method"] != "full" else "black"
        ax.scatter(r["flops_fraction"], r["f1"], s=60 if ours else 40, marker="o" if ours else "s", color=colour)
        if "f1_ci" in r:  # the bootstrap interval of F1 (`codecsight eval`)
            ax.plot([r["flops_fraction"]] * 2, r["f1_ci"], color=colour, alpha=0.35, lw=1)
    fig.canvas.draw()  # fixes the limits, so label boxes can be placed in points
    placed = []  # label boxes (left, bottom, width) in points; every box is 8 points high
    for r in sorted(rows, key=lambda r: (r["flops_fraction"], r["f1"])):
        x, y = ax.transData.transform((r["flops_fraction"], r["f1"])) * 72 / fig.dpi
        w = 3.9 * len(r["method"])  # a 7-pt label's width
        # the first offset whose box overlaps no label placed before: methods crowd near full and near CodecSight
        offsets = [(5, 4), (5, -10), (5, 14), (5, -20), (-w - 5, 4), (-w - 5, -10), (5, 24), (5, -30)]
        free = [(dx, dy) for dx, dy in offsets if not any(
            x + dx < px + pw and px < x + dx + w and abs(y + dy - py) < 8 for px, py, pw in placed)]
        dx, dy = (free or offsets)[0]
        placed.append((x + dx, y + dy, w))
        ax.annotate(r["method"], (r["flops_fraction"], r["f1"]), fontsize=7, xytext=(dx, dy),
                    textcoords="offset points")
    ax.set_xlabel("FLOPs fraction of full compute (ViT + LLM prefill)")
    ax.set_ylabel("window-level F1 (held-out synthetic streams)")
    ax.set_title("CodecSight (red) against peers (blue); bars: 95% intervals of F1")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
