"""The streaming runtime end to end on tiny random-weight models (real classes) and generated clips."""
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from clips import moving_square_clip, shared_clip
from tiny import tiny_vlm

from codecsight.errors import ConfigError
from codecsight.flops import count_flops, prefill_work
from codecsight.plan import PlanConfig
from codecsight.prefill.engine import DEFAULT_BUDGET
from codecsight.runtime import Engine, Question, method
from codecsight.signals import ChangeRule

HW = (112, 168)  # 4 x 6 tokens of 28 px
Q = Question("is there a red object ?", window=8, stride=2)


@pytest.fixture(scope="module")
def adapter():
    torch.manual_seed(0)
    return tiny_vlm()


@pytest.fixture(scope="module")
def clip8s(clip_dir):
    return moving_square_clip(str(clip_dir / "square80.mp4"), n=80)  # 8 s at 10 fps: 16 samples, 8 patches


def run(adapter, sources, methods, questions=(Q,), **kw):
    eng = Engine(adapter, [method(m) for m in methods], list(questions), fps=2.0, input_hw=HW, **kw)
    for i, s in enumerate(sources):
        eng.add_stream(s, f"s{i}")
    events = []
    reports = eng.run(events.append)
    return events, reports


def test_windows_slide_and_match_full_compute_when_everything_is_recomputed(adapter, clip8s):
    # codecsight selection with every token kept and every KV recomputed must equal full compute exactly
    events, reports = run(adapter, [clip8s], ["full", "codecsight:kv_policy=full,select=all"])
    full = [e for e in events if e.method == "full"]
    same = [e for e in events if e.method != "full"]
    assert [(e.window, e.start, e.end) for e in full] == [(i, float(i), i + 4.0) for i in range(5)]
    assert [e.p_yes for e in full] == pytest.approx([e.p_yes for e in same], abs=1e-5)


def test_codecsight_saves_and_counters_are_consistent(adapter, clip8s):
    events, reports = run(adapter, [clip8s], ["codecsight", "full"])
    c, f = reports[0].counters["codecsight"], reports[0].counters["full"]
    assert c.windows == f.windows == 5 and c.samples == f.samples == 16 and c.patches == 8
    assert c.tokens == f.tokens == 8 * 24 and f.tokens_encoded == f.tokens
    assert 0 < c.tokens_encoded < 0.6 * c.tokens  # a square on a static background
    assert c.vit_flops < 0.6 * f.vit_flops and f.vit_flops == f.vit_flops_full
    assert c.llm_flops < 0.7 * f.llm_flops and f.llm_flops == f.llm_flops_full
    assert c.vit_flops_full == f.vit_flops_full and c.llm_flops_full == f.llm_flops_full
    # the full method's per-window cost is a plain prefill of the whole window (the counter's own rule)
    system_and_question_free = f.llm_flops_full // f.windows
    lengths = [n for n in range(1, 400)
               if count_flops(adapter.config, prefill=prefill_work(np.arange(n), logits=0)).llm
               == system_and_question_free]
    assert len(lengths) == 1 and lengths[0] > 4 * 24


def test_two_streams_and_two_questions_at_once(adapter, clip8s, square_clip):
    q2 = Question("is there a blue object ?", window=4, stride=2)
    events, reports = run(adapter, [clip8s, square_clip], ["codecsight"], questions=(Q, q2))
    by = {(e.stream, e.question) for e in events}
    assert by == {(s, q.text) for s in ("s0", "s1") for q in (Q, q2)}
    assert len([e for e in events if e.stream == "s0" and e.question == q2.text]) == 7  # 8 patches, 2-patch window
    assert all(0 <= e.p_yes <= 1 and e.yes == (e.p_yes >= 0.5) for e in events)
    assert reports[1].counters["codecsight"].windows > 0 and not any(r.error for r in reports)


def test_streams_share_prefill_calls_and_answer_as_if_alone(adapter, clip8s, monkeypatch):
    """Due windows of several streams are prefilled and answered in one batch, methods apart (so that each
    method's time is its own); answers equal each stream alone."""
    import codecsight.runtime.engine as engine

    sizes = {"prefill_many": [], "ask_many": []}

    def spy(name):
        real = getattr(engine, name)

        def batched(jobs, *args):
            sizes[name].append(len(jobs))
            return real(jobs, *args)
        return batched

    for name in sizes:
        monkeypatch.setattr(engine, name, spy(name))
    together, _ = run(adapter, [clip8s, clip8s], ["codecsight", "full"])
    assert max(sizes["prefill_many"]) == 2 and max(sizes["ask_many"]) == 2  # two streams a call, one method
    alone, _ = run(adapter, [clip8s], ["codecsight", "full"])
    key = lambda e: (e.method, e.window, e.question)  # noqa: E731
    for stream in ("s0", "s1"):
        mine = sorted((e for e in together if e.stream == stream), key=key)
        assert [key(e) for e in mine] == sorted(map(key, alone))
        assert [e.p_yes for e in mine] == pytest.approx([e.p_yes for e in sorted(alone, key=key)], abs=1e-5)


def test_stream_that_breaks_mid_window_keeps_what_was_answered(adapter, clip_dir, tmp_path):
    ts = moving_square_clip(str(clip_dir / "square80.ts"), n=80)
    data = open(ts, "rb").read()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    missing = str(tmp_path / "missing.mp4")
    events, reports = run(adapter, [str(cut), missing], ["codecsight"])
    assert reports[1].error and "no such file" in reports[1].error  # one bad stream does not stop the others
    assert 1 <= len([e for e in events if e.stream == "s0"]) < 5
    assert reports[0].counters["codecsight"].samples < 16


def test_baselines_run_on_the_same_path(adapter, clip8s):
    events, reports = run(adapter, [clip8s], ["full", "uniform", "evs", "pixel", "stc", "cacheblend", "reuse-none"])
    counters = reports[0].counters
    assert {e.method for e in events} == set(counters)
    assert counters["uniform"].tokens_encoded == counters["full"].tokens // 2
    assert counters["evs"].tokens_encoded == counters["full"].tokens  # post-ViT: the ViT runs on everything
    assert counters["evs"].tokens_llm < 0.6 * counters["full"].tokens_llm
    # stc: a full reference every 2 patches, 25% of the tokens (6 of 24) in between
    assert counters["stc"].tokens_encoded == 4 * 24 + 4 * 6
    assert counters["reuse-none"].llm_flops < counters["cacheblend"].llm_flops < counters["full"].llm_flops


def test_method_knobs_reach_the_change_rule_and_the_plan():
    m = method("codecsight:pixel_tau=4,refresh_every=none,budget=0.5,sticky=true,kv_budget=0.3")
    assert (m.rule.pixel_tau, m.plan.refresh_every, m.plan.budget, m.plan.sticky, m.kv_budget) == (4.0, None, 0.5,
                                                                                                  True, 0.3)
    assert m.name == "codecsight:pixel_tau=4,refresh_every=none,budget=0.5,sticky=true,kv_budget=0.3"
    # everything else stays the default's
    assert replace(m, name="codecsight", rule=ChangeRule(), plan=PlanConfig(), kv_budget=DEFAULT_BUDGET) == \
        method("codecsight")
    assert method("evs:post=none").post is None
    assert method("codecsight:sticky=true,sticky=false").plan.sticky is False
    for bad, why in [("codecsight:pixel_tau=300", "pixel_tau"), ("codecsight:refresh_every=2.5", "refresh_every"),
                     ("codecsight:sticky=yes", "true or false"), ("codecsight:budget=2", "budget"),
                     ("codecsight:rule=x", "unknown knob"), ("codecsight:pixel_tau=none", "pixel_tau")]:
        with pytest.raises(ConfigError, match=why):
            method(bad)


def test_bad_configuration_is_refused(adapter):
    with pytest.raises(ConfigError):
        method("nope")
    with pytest.raises(ConfigError):
        method("codecsight:bogus=1")
    with pytest.raises(ConfigError):
        Engine(adapter, [method("full")], [], input_hw=HW)
    for bad in (-1, 10**6):
        with pytest.raises(ConfigError, match="answer_tokens"):
            Engine(adapter, [method("full")], [Question("x", 16, 4)], input_hw=HW, answer_tokens=bad)
    with pytest.raises(ValueError):
        eng = Engine(adapter, [method("full")], [Question("x", window=7, stride=2)], input_hw=HW)
        eng.add_stream("x.mp4")


def test_watch_command_end_to_end(adapter, clip8s, tmp_path, capsys):
    """`codecsight watch` on a model folder it loads with from_pretrained: events, a JSONL file, a summary whose
    figures agree with the per-stage counters, and agreement against full compute."""
    import json

    from codecsight.cli import main

    model_dir = tmp_path / "model"
    adapter.model.save_pretrained(model_dir)
    adapter.tokenizer.save_pretrained(model_dir)
    jsonl = tmp_path / "events.jsonl"
    rc = main(["watch", clip8s, "--model", str(model_dir), "--ask", "is there a red object ?", "--size", "112",
               "--window", "8", "--stride", "2", "--compare", "full", "--jsonl", str(jsonl)])
    out = capsys.readouterr().out
    assert rc == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 10 and {r["method"] for r in rows} == {"codecsight", "full"}
    assert out.count("p=") == 5 and out.count("is there a red object ?") == 5  # only the main method's events
    assert "agreement with full:" in out and "5 answers" in out
    line = next(l for l in out.splitlines() if l.startswith("square80") and " codecsight " in l)
    assert line.split()[2] == "5"  # windows


def test_watch_rejects_bad_parameters(adapter, clip8s, tmp_path, capsys):
    from codecsight.cli import main

    model_dir = tmp_path / "model"
    adapter.model.save_pretrained(model_dir)
    adapter.tokenizer.save_pretrained(model_dir)
    assert main(["watch", clip8s, "--model", str(model_dir), "--window", "7"]) == 2
    assert "multiples of 2" in capsys.readouterr().err
    assert main(["watch", clip8s, "--model", str(model_dir), "--method", "nope"]) == 2
    assert main(["watch", clip8s, "--model", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize("family", ["qwen3_vl", "internvl3"])
def test_every_family_and_hevc_run_through_the_same_runtime(family, clip8s, clip_dir):
    """The runtime never asks which family it drives: Qwen3-VL (deepstack) and InternVL3 (1-frame temporal
    patches, 1-D RoPE) run the same pipelines, on H.264 and on HEVC, and with nothing pruned equal full compute."""
    from tiny import WORDS

    from codecsight.models.internvl3 import InternVL3Adapter
    from codecsight.models.qwen3_vl import Qwen3VLAdapter
    from codecsight.reference.model import word_tokenizer

    ad = {"qwen3_vl": Qwen3VLAdapter, "internvl3": InternVL3Adapter}[family].tiny()
    ad.tokenizer = word_tokenizer(WORDS)
    hevc = moving_square_clip(str(clip_dir / "square80_hevc.mp4"), n=80, codec="libx265")
    eng = Engine(ad, [method("codecsight"), method("full"), method("codecsight:kv_policy=full,select=all")],
                 [Q], fps=2.0)
    eng.add_stream(clip8s, "h264")
    eng.add_stream(hevc, "hevc")
    events = []
    reports = eng.run(events.append)
    for r in reports:
        c, f = r.counters["codecsight"], r.counters["full"]
        assert not r.error and c.windows == f.windows == 5
        assert c.tokens_encoded < 0.5 * c.tokens and c.llm_flops < 0.7 * f.llm_flops
    full = {(e.stream, e.window): e.p_yes for e in events if e.method == "full"}
    same = {(e.stream, e.window): e.p_yes for e in events if e.method.startswith("codecsight:")}
    assert same.keys() == full.keys() and all(abs(same[k] - full[k]) < 1e-5 for k in full)


def test_live_stream_that_outruns_the_model_degrades_explicitly(adapter, clip_dir):
    """A live source cannot wait: with a small queue the engine skips due windows while it is behind and the
    reader drops samples it cannot queue; both are counted, memory stays bounded, answers still come."""
    long = moving_square_clip(str(clip_dir / "square400.mp4"), n=400)  # 40 s: 80 samples, 40 patches
    eng = Engine(adapter, [method("full")], [Question("is there a red object ?", window=4, stride=2)], fps=2.0,
                 input_hw=HW, queue_size=4, batch=1)
    eng.add_stream(long, "cam", live=True)
    events = []
    reports = eng.run(events.append)
    c, r = reports[0].counters["full"], reports[0]
    assert r.samples_dropped + c.windows_skipped > 0  # it fell behind, and said so
    assert c.samples + r.samples_dropped == 80  # every sample was either processed or counted as dropped
    assert c.windows == len(events) > 0


def test_dropped_grid_answers_every_window_even_when_nothing_moves(adapter, clip8s):
    """With unchanged tokens dropped, a window holds what stands still only through a full encoding inside it:
    windows shorter than the plan's refresh period get one all the same (the first 2 s of the clip are static)."""
    short = Question("is there a red object ?", window=4, stride=2)
    events, reports = run(adapter, [clip8s], ["full", "codecsight:linger=0"], questions=(short,))
    c, f = reports[0].counters["codecsight:linger=0"], reports[0].counters["full"]
    assert c.windows == f.windows == 7
    assert sorted(e.window for e in events if e.method == "codecsight:linger=0") == list(range(7))
    # a whole temporal patch at least every 2 patches (every window's length), and still less than full
    assert 4 * 24 <= c.tokens_encoded == c.tokens_llm < f.tokens_encoded


@pytest.mark.skipif(not os.path.exists(shared_clip("one-by-one-person")), reason="shared clips not present")
def test_watch_on_a_shared_clip_with_the_reference_model(tmp_path, capsys):
    """The main job as a user runs it: a real camera clip (its first 14 s, stream-copied, not re-encoded), the
    bundled reference VLM, full compute beside it; summary figures agree with the events and counters."""
    import json

    from codecsight.bench.e2e import clip_prefix
    from codecsight.cli import main

    src = clip_prefix(shared_clip("one-by-one-person"), 14.0)
    jsonl = tmp_path / "events.jsonl"
    try:
        rc = main(["watch", src, "--ask", "Is there a person?", "--ask", "Is there a red object?",
                   "--compare", "full", "--jsonl", str(jsonl), "--answer-tokens", "2"])
    finally:
        os.unlink(src)
    out = capsys.readouterr().out
    assert rc == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    windows = (28 - 16) // 4 + 1  # 14 s at 2 fps, the model's 16-sample window and stride 4
    assert len(rows) == 2 * 2 * windows and {r["answer"].split()[0] for r in rows} <= {"Yes", "No"}
    summary = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("tmp")}
    assert summary["codecsight"][2] == summary["full"][2] == str(windows)
    assert 0 < float(summary["codecsight"][4].rstrip("%")) < 100 == float(summary["full"][4].rstrip("%"))
    assert "agreement with full:" in out


def test_linger_keeps_stopped_tokens_and_at_its_limit_equals_substitution(adapter, clip8s):
    """linger=k shows a token the plan did not re-encode by its last embedding for k patches after it last changed
    (not after a full encoding merely refreshed it): the ViT encodes the same tokens, the LLM sees more of them the
    longer they linger, and when every token lingers for the whole stream the window is exactly the
    cached-substitution one (same plan)."""
    specs = ["codecsight:refresh_every=4,kv_policy=full,linger=0", "codecsight:refresh_every=4,kv_policy=full",
             "codecsight:refresh_every=4,kv_policy=full,linger=64",
             "codecsight-cached:refresh_every=4,kv_policy=full"]
    events, reports = run(adapter, [clip8s], specs)
    c = [reports[0].counters[s] for s in specs]
    assert len({x.tokens_encoded for x in c}) == 1
    assert c[0].tokens_llm == c[0].tokens_encoded < c[1].tokens_llm < c[2].tokens_llm == c[3].tokens_llm == c[3].tokens
    # linger=1 by the plan: what a patch encodes, and what changed in it or the patch before
    from codecsight.plan import plan_file

    _, plans = plan_file(clip8s, adapter.geometry, HW, config=PlanConfig(refresh_every=4))
    assert sum(p.full for p in plans) == 2 and not plans[4].changed.all()  # a periodic refresh: the background
    shown = [p.keep | p.changed | (q.changed if q else False) for q, p in zip([None, *plans], plans)]
    assert c[1].tokens_llm == sum(int(s.sum()) for s in shown)
    p = {s: [e.p_yes for e in events if e.method == s] for s in specs}
    assert p[specs[2]] == pytest.approx(p[specs[3]], abs=1e-6)
    assert p[specs[0]] != pytest.approx(p[specs[1]], abs=1e-6)
    assert method("codecsight").linger == 1 and method("codecsight-cached").linger == 0
    for bad in ("codecsight-cached:linger=1", "codecsight:linger=-1", "codecsight:linger=1000"):
        with pytest.raises(ConfigError, match="linger"):
            method(bad)


def test_stages_bench_charges_each_stage_and_refuses_bad_input(tmp_path, capsys):
    """`codecsight bench stages`: seconds per stage of each method on one stream against full in the same run,
    with an operator profile; bad input is a clear error before any model loads."""
    import json

    from codecsight.cli import main

    out, prof = tmp_path / "stages.json", tmp_path / "prof.txt"
    assert main(["bench", "stages", "--clip", shared_clip("bottle"), "--seconds", "10", "--methods", "codecsight",
                 "--json", str(out), "--profile", str(prof)]) == 0
    r = json.loads(out.read_text())
    full, ours = r["rows"]
    assert [full["method"], ours["method"]] == ["full", "codecsight"] and full["time_ratio"] == 1.0
    assert full["windows"] == ours["windows"] > 0 and 0 < ours["flops_fraction"] < 1
    for row in r["rows"]:  # the stages happen inside the run's wall time, and each took some
        assert set(row["stage_seconds"]) == {"plan", "vit", "prefill", "answer"}
        assert 0 < row["stage_seconds"]["vit"] and sum(row["stage_seconds"].values()) <= row["seconds"]
    assert "aten::" in prof.read_text()
    assert main(["bench", "stages", "--clip", str(tmp_path / "none.mp4")]) == 2
    assert main(["bench", "stages", "--clip", shared_clip("bottle"), "--seconds", "0"]) == 2
    assert main(["bench", "stages", "--clip", shared_clip("bottle"), "--methods", "nope"]) == 2
    assert main(["bench", "stages", "--clip", shared_clip("bottle"), "--device", "tpu"]) == 2
    assert "no such clip" in capsys.readouterr().err
