"""Score a method against labels: window- and video-level precision, recall and F1, with its cost.

Labels are JSONL next to the videos (paths relative to the labels file), in one of two shapes:
- window rows (the synthetic benchmark): {"video", "start", "end", "question", "type", "answer": "Yes"|"No"};
- video rows (e.g. UCF-Crime): {"video", "category", "answer"}; the question is --prompt with {X} = category
  (default: the published "Describe the frames and determine if they show {X}. Start your response with 'Yes' or
  'No'."), every window of the video is answered, and the video counts as "Yes" if any window does.
Every method runs through the streaming runtime, so `full` and the pipeline methods share one code path.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

PROMPT = "Describe the frames and determine if they show {X}. Start your response with 'Yes' or 'No'."
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
BLOCK_SECONDS = 60.0  # bootstrap unit: a video's minute (sliding windows overlap, so neighbours are not independent)
RESAMPLES = 1000


def add_arguments(p):
    p.add_argument("--labels", required=True, help="labels JSONL (window rows or video rows)")
    p.add_argument("--model", default=None, help="hub id or folder (default: the bundled reference VLM)")
    p.add_argument("--method", default="full", help="full, codecsight, or a peer baseline (NAME:knob=value,...)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--threshold", type=float, default=0.5, help="P(Yes) at or above which the answer is yes")
    p.add_argument("--answers", help="write every answered window here (JSONL: video, start, question, p_yes, and "
                   "type and answer where a window label exists), to look at, plot or pick a threshold from")
    p.add_argument("--prompt", default=PROMPT, help="question template for video rows; {X} = category")
    p.add_argument("--fps", type=float, default=None, help="sampling rate (default: labels' meta.json, else 2)")
    p.add_argument("--window", type=int, default=None, help="window in samples (default: meta.json, else 16)")
    p.add_argument("--stride", type=int, default=None, help="stride in samples (default: meta.json, else 4)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")


def read_labels(path: str, prompt: str = PROMPT) -> list[dict]:
    from codecsight.errors import ConfigError

    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                if "question" not in r:
                    r = {**r, "question": prompt.replace("{X}", r["category"]), "type": r["category"]}
                r["answer"] = str(r["answer"]).strip().capitalize()
                if r["answer"] not in ("Yes", "No") or "video" not in r:
                    raise ValueError("needs video and answer Yes/No")
            except (ValueError, KeyError) as e:
                raise ConfigError(f"{path}:{n}: not a label row ({e})") from e
            rows.append(r)
    if not rows:
        raise ConfigError(f"{path}: no labels")
    return rows


def prf(tp: int, fp: int, fn: int) -> dict:
    p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(1e-12, p + r)}


def outcomes(p: np.ndarray, truth: np.ndarray, threshold: float) -> np.ndarray:
    """(windows, 3) bool: true positive, false positive, false negative of P(Yes) >= threshold."""
    got = p >= threshold
    return np.stack([got & truth, got & ~truth, ~got & truth], 1)


def auc(p: np.ndarray, truth: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance that a Yes window scores above a No window (ties count half); 0.5 is
    a model that does not rank at all, whatever its F1. None without both answers."""
    n_yes = int(truth.sum())
    if n_yes in (0, len(truth)):
        return None
    _, where, counts = np.unique(p, return_inverse=True, return_counts=True)
    rank = (np.cumsum(counts) - (counts - 1) / 2)[where]  # 1-based ranks, ties sharing their mean
    return float((rank[truth].sum() - n_yes * (n_yes + 1) / 2) / (n_yes * (len(truth) - n_yes)))


def f1_interval(p: np.ndarray, truth: np.ndarray, block: np.ndarray, threshold: float,
                ref: np.ndarray | None = None, resamples: int = RESAMPLES) -> list[float]:
    """95% interval of F1 with the windows resampled by block (`BLOCK_SECONDS` of one video); with ref (another
    method's P(Yes) on the same windows), of the difference F1 - F1(ref), paired: both see the same resample."""
    ids, inv = np.unique(block, return_inverse=True)
    pick = np.random.default_rng(0).integers(0, len(ids), (resamples, len(ids)))

    def f1(q):
        counts = np.zeros((len(ids), 3))
        np.add.at(counts, inv, outcomes(q, truth, threshold))
        tp, fp, fn = counts[pick].sum(1).T
        return 2 * tp / np.maximum(1e-12, 2 * tp + fp + fn)

    d = f1(p) - (f1(ref) if ref is not None else 0)
    return [float(x) for x in np.percentile(d, [2.5, 97.5])]


def window_scores(labels: list[dict], answers: dict, threshold: float, ref: dict | None = None,
                  intervals: bool = False) -> dict:
    """answers: (video stem, start rounded to 0.01 s, question) -> P(Yes). Unanswered windows count as No.
    Per question type, besides F1: its AUC, and the F1 of answering Yes to every window (what a model that learned
    only how often the answer is Yes can reach). The same per question text under "questions": a type's mean can
    hide one question the model does not answer at all. With `intervals`, a 95% block-bootstrap interval of F1
    ("f1_ci"), and with ref (another method's answers, e.g. full compute's) the difference to it ("f1_delta",
    "f1_delta_ci")."""
    per: dict[tuple[str, str], list[tuple[float, bool, str, float]]] = {}
    for r in labels:
        if "start" not in r:
            continue
        key = _window_key(r)
        block = f"{key[0]}@{int(r['start'] // BLOCK_SECONDS)}"
        per.setdefault((r.get("type", "all"), r["question"]), []).append(
            (answers.get(key, 0.0), r["answer"] == "Yes", block, (ref or {}).get(key, 0.0)))
    if not per:
        return {}

    def arrays(key):  # group name -> (P(Yes), truth, block, ref's P(Yes))
        rows: dict[str, list] = {}
        for k, v in per.items():
            rows.setdefault(key(k), []).extend(v)
        return {g: tuple(map(np.array, zip(*v))) for g, v in sorted(rows.items())}

    def scores(p, truth, block, p_ref):
        out = {**prf(*outcomes(p, truth, threshold).sum(0).tolist()),
               "support": len(p), "positive": int(truth.sum()), "auc": auc(p, truth),
               "always_yes_f1": prf(int(truth.sum()), int((~truth).sum()), 0)["f1"]}
        if intervals:
            out["f1_ci"] = f1_interval(p, truth, block, threshold)
            if ref is not None:
                out["f1_delta"] = out["f1"] - prf(*outcomes(p_ref, truth, threshold).sum(0).tolist())["f1"]
                out["f1_delta_ci"] = f1_interval(p, truth, block, threshold, p_ref)
        return out

    by_type = arrays(lambda k: k[0])
    every = scores(*map(np.concatenate, zip(*by_type.values())))
    out = {k: v for k, v in every.items() if k in ("precision", "recall", "f1") or k.startswith("f1_")}
    out["per_question"] = {t: scores(*v) for t, v in by_type.items()}
    type_of = {q: t for t, q in per}
    out["questions"] = {q: {"type": type_of[q], **scores(*v)} for q, v in arrays(lambda k: k[1]).items()}
    ranked = [q["auc"] for q in out["per_question"].values() if q["auc"] is not None]
    out["auc"] = float(np.mean(ranked)) if ranked else None  # mean over question types, each counting once
    return out


def video_scores(labels: list[dict], answers: dict, threshold: float) -> dict:
    """A (video, question) is Yes if any of its windows is; predicted Yes if any answer is."""
    truth: dict[tuple, bool] = {}
    for r in labels:
        key = (_stem(r["video"]), r["question"])
        truth[key] = truth.get(key, False) or r["answer"] == "Yes"
    pred: dict[tuple, bool] = {}
    for (video, _, question), p in answers.items():
        pred[(video, question)] = pred.get((video, question), False) or p >= threshold
    tp = sum(t and pred.get(k, False) for k, t in truth.items())
    fp = sum(not t and pred.get(k, False) for k, t in truth.items())
    fn = sum(t and not pred.get(k, False) for k, t in truth.items())
    return prf(tp, fp, fn)


def write_answers(path: str, answers: dict, labels: list[dict]) -> None:
    """answers ((video stem, start, question) -> P(Yes)) as JSONL in stream and time order, each with its label's
    type and answer where a window row labels it (video rows label whole videos, not windows)."""
    truth = {_window_key(r): r for r in labels if "start" in r}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for key, p in sorted(answers.items()):
            row = dict(zip(("video", "start", "question"), key), p_yes=p)
            if key in truth:
                row.update(type=truth[key].get("type"), answer=truth[key]["answer"])
            f.write(json.dumps(row) + "\n")


def _window_key(row: dict) -> tuple[str, float, str]:
    """A window label row's key into the answers: (video stem, start rounded to 0.01 s, question)."""
    return _stem(row["video"]), round(row["start"], 2), row["question"]


def _stem(video: str) -> str:
    return os.path.splitext(os.path.basename(video))[0]


def run_method(adapter, spec: str, sources: list[tuple[str, str]], questions, fps: float, input_hw=None):
    """Run one method over (name, path) sources with P(Yes)-only answers: (events, counters summed over the
    streams, wall seconds, {stream: error} of the streams that failed)."""
    from codecsight.runtime import Counters, Engine, method

    m = method(spec)
    engine = Engine(adapter, [m], questions, fps=fps, input_hw=input_hw, answer_tokens=0)  # P(Yes) is scored
    for name, path in sources:
        engine.add_stream(path, name)
    events = []
    t0 = time.perf_counter()
    reports = engine.run(events.append)
    seconds = time.perf_counter() - t0
    c = Counters()
    for r in reports:
        c.add(r.counters[m.name])
    return events, c, seconds, {r.name: r.error for r in reports if r.error}


def evaluate(adapter, labels: list[dict], root: str, spec: str, fps: float, window: int, stride: int,
             threshold: float = 0.5, base=None) -> dict:
    """Run one method over the labelled videos and score it. base: (counters, seconds, answers) of `full`, for the
    fractions and the paired difference in F1; returns the scores and that triple of this run."""
    from codecsight.runtime import Question

    questions = [Question(q, window, stride, threshold) for q in sorted({r["question"] for r in labels})]
    sources = [(_stem(v), os.path.join(root, v)) for v in sorted({r["video"] for r in labels})]
    events, c, seconds, failed = run_method(adapter, spec, sources, questions, fps)
    answers = {(e.stream, round(e.start, 2), e.question): e.p_yes for e in events}
    b, b_seconds, b_answers = base or (c, seconds, None)
    win = window_scores(labels, answers, threshold, b_answers, intervals=True)
    out = {"method": spec, **(win or video_scores(labels, answers, threshold)),
           "video": video_scores(labels, answers, threshold),
           "sweep": [{"threshold": t, "f1": (window_scores(labels, answers, t) or video_scores(labels, answers, t))["f1"]}
                     for t in THRESHOLDS],
           "tokens_fraction": c.tokens_encoded / max(1, b.tokens_encoded),
           "flops": c.flops,  # ViT + LLM prefill, absolute: compares windows and strides
           "flops_fraction": c.flops_fraction(b),
           "vit_flops_fraction": c.vit_flops / max(1, b.vit_flops),
           "llm_flops_fraction": c.llm_flops / max(1, b.llm_flops),
           "time_ratio": seconds / b_seconds, "seconds": seconds,
           # where the time went (engine thread: plan, ViT, prefill, answers; decoding runs on reader threads)
           "stage_seconds": dict(c.seconds),
           "stage_time_ratio": {k: v / b.seconds[k] for k, v in c.seconds.items() if b.seconds.get(k)},
           "windows": c.windows,
           "windows_per_s": c.windows / seconds, "failed": failed}
    if not win:  # video rows: per category at the video level
        types = sorted({r.get("type", "all") for r in labels})
        out["per_question"] = {t: {**video_scores([r for r in labels if r.get("type", "all") == t], answers,
                                                  threshold), "support": sum(r.get("type", "all") == t for r in labels)}
                               for t in types}
    return out, (c, seconds, answers)


def _spread(s: dict) -> str:
    """' [lo, hi]' and the difference to full compute with its interval, where the scores have them."""
    out = " [{:.3f}, {:.3f}]".format(*s["f1_ci"]) if "f1_ci" in s else ""
    if "f1_delta" in s:
        out += " ({:+.3f} vs full, [{:+.3f}, {:+.3f}])".format(s["f1_delta"], *s["f1_delta_ci"])
    return out


def meta_defaults(labels_path: str) -> dict:
    meta = os.path.join(os.path.dirname(os.path.abspath(labels_path)), "meta.json")
    if os.path.isfile(meta):
        with open(meta) as f:
            return json.load(f)
    return {}


def run(args) -> int:
    import torch

    from codecsight.bench import write_json
    from codecsight.errors import ConfigError
    from codecsight.models import load_adapter
    from codecsight.runtime import method

    if args.threads:
        torch.set_num_threads(args.threads)
    method(args.method)  # a bad name fails before the model loads
    if not 0 <= args.threshold <= 1:
        raise ConfigError(f"threshold must be within [0, 1], got {args.threshold}")
    labels = read_labels(args.labels, args.prompt)
    meta = meta_defaults(args.labels)
    fps, window, stride = (args.fps or meta.get("rate", 2.0), args.window or meta.get("window", 16),
                           args.stride or meta.get("stride", 4))
    adapter = load_adapter(args.model, device=args.device)
    root = os.path.dirname(os.path.abspath(args.labels))
    base = None
    if args.method != "full":  # fractions are against full compute in the same run
        print("full compute, for the cost fractions ...", flush=True)
        _, base = evaluate(adapter, labels, root, "full", fps, window, stride, args.threshold)
    result, (*_, answers) = evaluate(adapter, labels, root, args.method, fps, window, stride, args.threshold, base)
    if args.answers:
        write_answers(args.answers, answers, labels)
    result = {"model": args.model or "bundled reference VLM", **result}
    ranked = f", mean AUC over question types {result['auc']:.3f}" if result.get("auc") is not None else ""
    print(f"{result['method']}: F1 {result['f1']:.3f}{_spread(result)} (P {result['precision']:.3f}, "
          f"R {result['recall']:.3f}){ranked}; video-level F1 {result['video']['f1']:.3f}; tokens "
          f"{result['tokens_fraction']:.3f}, FLOPs {result['flops_fraction']:.3f}, time {result['time_ratio']:.3f} of full")
    if "f1_ci" in result:
        print(f"  [95% intervals: windows resampled by {BLOCK_SECONDS:g} s blocks of each video]")
    for t, q in result["per_question"].items():
        ranked = f"  AUC {q['auc']:.3f}  (answering Yes always: F1 {q['always_yes_f1']:.3f})" \
            if q.get("auc") is not None else ""
        print(f"  {t:12s} F1 {q['f1']:.3f}{_spread(q)}  support {q['support']}{ranked}")
        mine = {k: v for k, v in result.get("questions", {}).items() if v["type"] == t}
        if len(mine) > 1:  # a type's mean can hide one question the model does not answer
            for text, v in mine.items():
                ranked = f"  AUC {v['auc']:.3f}" if v["auc"] is not None else ""
                print(f"    {text:38s} F1 {v['f1']:.3f}  support {v['support']}{ranked}")
    for name, err in result["failed"].items():
        print(f"  stream {name} failed: {err}")
    write_json(args.json, result)
    return 0
