"""Sliding-window prefill with KV reuse against full prefills of the stock transformers text models."""
import functools
import warnings

import pytest
import torch

from codecsight.errors import ConfigError
from codecsight.models.internvl3 import InternVL3Adapter
from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
from codecsight.models.qwen3_vl import Qwen3VLAdapter
from codecsight.prefill.engine import WindowPrefill
from codecsight.prefill.window import Segment, Window, build_layout

FAMILIES = [Qwen25VLAdapter, Qwen3VLAdapter, InternVL3Adapter]
SYSTEM, QUESTION, YES_NO = [11, 12, 13, 14], [21, 22, 23], (31, 32)


@functools.cache
def tiny(adapter_class, seed=0, layers=None):
    """Shared across tests (none changes the adapter): building a model costs more than these tests run."""
    return adapter_class.tiny(seed=seed, **({"text_config": {"num_hidden_layers": layers}} if layers else {}))


def segments(adapter, n, grid=(3, 4), keep=1.0, seed=0):
    """n temporal patches of random embeddings (and deepstack features where the model has them), every third
    an anchor; keep < 1 drops tokens at random (pruned segments)."""
    g = torch.Generator().manual_seed(seed)
    hidden = adapter.config.get_text_config().hidden_size
    n_deep = len(getattr(adapter.config.vision_config, "deepstack_visual_indexes", []))
    out = []
    for i in range(n):
        coords = Segment.full_coords(*grid)
        if keep < 1:
            kept = torch.rand(len(coords), generator=g) < keep
            kept[0] = True
            coords = coords[kept]
        deep = [torch.randn(len(coords), hidden, generator=g) for _ in range(n_deep)] or None
        out.append(Segment(i, torch.randn(len(coords), hidden, generator=g), coords, grid, seconds=float(i),
                           anchor=i % 3 == 0, deepstack=deep))
    return out


def full_logits(adapter, window):
    """Next-token logits after [window][question] from one stock forward of the library's text model."""
    lay = build_layout(adapter, window, SYSTEM)
    n = len(QUESTION)
    embeds = torch.cat([lay.embeds, adapter.embed_text(QUESTION)])[None]
    positions = torch.cat([lay.positions, (lay.cursor + torch.arange(n)).expand(3, -1)], dim=1)
    kwargs = {}
    if lay.deepstack is not None:
        kwargs = dict(visual_pos_masks=torch.cat([lay.visual, torch.zeros(n, dtype=torch.bool)])[None],
                      deepstack_visual_embeds=lay.deepstack)
    positions = positions[:1] if adapter.family == "internvl3" else positions[:, None]  # 1-D RoPE takes (B, L)
    with torch.inference_mode():
        out = adapter.language_model()(inputs_embeds=embeds, position_ids=positions, **kwargs)
        return adapter.model.lm_head(out.last_hidden_state[0, -1])


def slide(adapter, policy, budget, segs, windows=2, width=6, stride=2, **kwargs):
    """Prefill `windows` windows sliding by `stride` segments; return the answers and stats of each."""
    wp = WindowPrefill(adapter, SYSTEM, policy=policy, budget=budget, yes_no=YES_NO, **kwargs)
    out = []
    for w in range(windows):
        window = Window(segs[w * stride:w * stride + width], w)
        kv, stats = wp.prefill(window)
        out.append((window, wp.ask(kv, [QUESTION], max_new_tokens=2)[0], stats, kv))
    return out


@pytest.mark.parametrize("keep", [1.0, 0.6], ids=["full-grid", "pruned"])
@pytest.mark.parametrize("adapter_class", FAMILIES)
@pytest.mark.parametrize("policy", ["random", "deviation"])
def test_refresh_everything_through_reuse_equals_full_prefill(adapter_class, keep, policy):
    a = tiny(adapter_class)
    runs = slide(a, policy, 1.0, segments(a, 8, keep=keep))
    window, answer, stats, _ = runs[-1]
    assert stats.policy == policy and 0 < stats.new < stats.tokens  # the reuse path ran
    assert stats.exact >= len(SYSTEM) and stats.new + stats.exact + stats.refreshed == stats.tokens  # all recomputed
    assert (answer.logits - full_logits(a, window)).abs().max() <= 1e-4


@pytest.mark.parametrize("adapter_class", FAMILIES)
def test_rerotated_keys_equal_fresh_keys(adapter_class):
    """Layer-0 keys depend only on the token and its position, so a reused key moved to its new position must
    equal the key a full prefill of the new window computes."""
    a = tiny(adapter_class)
    segs = segments(a, 9, keep=0.7)
    (_, _, _, old), (_, _, stats, kv) = slide(a, "none", 0.0, segs, stride=3)
    fresh = slide(a, "full", 0.0, segs[3:], windows=1)[0][3]
    assert stats.refreshed == 0 and 0 < stats.new < stats.tokens
    assert kv.keys == fresh.keys and torch.equal(kv.positions, fresh.positions)
    where = {key: i for i, key in enumerate(old.keys)}
    moved = [i for i, key in enumerate(kv.keys) if key in where and
             not torch.equal(kv.positions[:, i], old.positions[:, where[key]])]
    # every reused token moved (Qwen2.5-VL: all but <|vision_end|>, which follows a video of fixed length)
    assert len(moved) >= stats.tokens - stats.new - stats.exact - 1
    assert (kv.k[0] - fresh.k[0]).abs().max() <= 1e-5
    assert (kv.v[0] - fresh.v[0]).abs().max() <= 1e-6


@pytest.mark.parametrize("adapter_class", FAMILIES)
def test_deviation_refresh_is_closer_to_full_than_random(adapter_class):
    a = tiny(adapter_class, seed=1, layers=3)
    segs = segments(a, 10, seed=1)

    def errors(policy):
        runs = slide(a, policy, 0.3, segs, windows=3, seed=1)[1:]
        return [float((ans.logits - full_logits(a, w)).norm()) for w, ans, _, _ in runs]

    deviation, random, none = errors("deviation"), errors("random"), errors("none")
    assert all(d < r for d, r in zip(deviation, random)), (deviation, random)
    assert all(r <= n for r, n in zip(random, none)), (random, none)


@pytest.mark.parametrize("questions", [
    [QUESTION, [41, 42], [51, 52, 53, 54, 55]],
    [[51, 52, 53, 54, 55], [51, 52, 53, 56], [51, 52, 53, 57, 58, 59]],  # a common template prefix, computed once
], ids=["distinct", "common-prefix"])
@pytest.mark.parametrize("adapter_class", [Qwen25VLAdapter, Qwen3VLAdapter])
def test_shared_questions_equal_separate_prefills(adapter_class, questions):
    a = tiny(adapter_class)
    window = Window(segments(a, 4, keep=0.8))
    shared = WindowPrefill(a, SYSTEM, policy="full", yes_no=YES_NO)
    answers = shared.ask(shared.prefill(window)[0], questions, max_new_tokens=4)
    for q, answer in zip(questions, answers):
        alone = WindowPrefill(a, SYSTEM, policy="full", yes_no=YES_NO)
        ref = alone.ask(alone.prefill(window)[0], [q], max_new_tokens=4)[0]
        assert answer.ids == ref.ids and len(answer.ids) == 4
        assert (answer.logits - ref.logits).abs().max() <= 1e-5
        assert answer.p_yes == pytest.approx(float(torch.softmax(ref.logits[list(YES_NO)], 0)[0]), abs=1e-6)
    if questions[0] == QUESTION:
        assert (answers[0].logits - full_logits(a, window)).abs().max() <= 1e-4
    # P(Yes) only: the same probabilities from the two vocabulary rows, no text
    bare = shared.ask(shared.prefill(window)[0], questions, max_new_tokens=0)
    for answer, b in zip(answers, bare):
        assert b.text == "" and b.ids == [] and b.logits.shape == (2,)
        assert b.p_yes == pytest.approx(answer.p_yes, abs=1e-6)


def test_scaled_rotary_refuses_reuse_and_prefills_in_full():
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192, "rope_theta": 1e6,
            "mrope_section": [2, 3, 3]}
    a = Qwen25VLAdapter.tiny(text_config={"rope_parameters": yarn})
    with pytest.warns(UserWarning, match="attention_scaling"):
        runs = slide(a, "codec", 0.1, segments(a, 8))
    window, answer, stats, _ = runs[-1]
    assert stats.policy == "full"
    assert (answer.logits - full_logits(a, window)).abs().max() <= 1e-4


def test_fixed_longrope_reuses_exactly_and_length_dependent_is_refused():
    """LongRoPE with per-pair factors (the reference model's spatial rotary) is a plain rotation when its short and
    long factors agree: reused keys re-rotate exactly. With two lists the frequencies depend on the length."""
    factors = [1.0, 0.1, 0.02, 1.0, 1.0, 0.003, 1.0, 1.0]  # 16-dim heads: 8 pairs
    longrope = {"rope_type": "longrope", "factor": 1.0, "original_max_position_embeddings": 4096, "rope_theta": 1e6,
                "mrope_section": [2, 3, 3], "short_factor": factors, "long_factor": factors}
    a = Qwen25VLAdapter.tiny(text_config={"rope_parameters": longrope, "max_position_embeddings": 4096})
    assert a.rerotation_refusal() is None
    runs = slide(a, "random", 1.0, segments(a, 8, keep=0.7))
    window, answer, stats, _ = runs[-1]
    assert stats.policy == "random" and 0 < stats.new < stats.tokens
    assert (answer.logits - full_logits(a, window)).abs().max() <= 1e-4
    two = Qwen25VLAdapter.tiny(text_config={"rope_parameters": {**longrope, "long_factor": [2.0] * 8},
                                            "max_position_embeddings": 4096})
    assert "sequence length" in two.rerotation_refusal()


def test_partial_rotary_is_refused():
    partial = {"rope_type": "linear", "factor": 1.0, "rope_theta": 1e6, "partial_rotary_factor": 0.5}
    a = InternVL3Adapter.tiny(text_config={"rope_parameters": partial})
    assert "partial rotary" in a.rerotation_refusal()
    with pytest.warns(UserWarning, match="partial rotary"):
        assert WindowPrefill(a, SYSTEM, policy="deviation").refusal
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert WindowPrefill(a, SYSTEM, policy="full").refusal is None  # nothing to refuse


def test_periodic_full_refresh_and_budget():
    a = tiny(Qwen25VLAdapter)
    segs = segments(a, 14)
    runs = slide(a, "anchors", 0.25, segs, windows=5, full_every=3)
    assert [s.policy for _, _, s, _ in runs] == ["full", "anchors", "anchors", "full", "anchors"]
    for _, _, stats, _ in runs[1:3]:
        reusable = stats.tokens - stats.new - stats.exact
        assert 0 < stats.refreshed <= round(0.25 * reusable)
        assert stats.flops < stats.full_flops


def test_codec_policy_recomputes_changed_tokens_first():
    a = tiny(Qwen3VLAdapter)
    segs = segments(a, 8)
    for s in segs:
        s.anchor = False
        s.changed = torch.zeros(len(s.embeds), dtype=torch.bool)
    segs[4].changed[:3] = True
    stats = slide(a, "codec", 0.5, segs)[-1][2]
    assert stats.refreshed == 3  # only flagged tokens, however large the budget
    stats = slide(a, "codec", 0.0, segs)[-1][2]
    assert stats.refreshed == 0


def test_vlcache_recomputes_the_first_tokens_of_every_reused_segment(monkeypatch):
    a = tiny(Qwen25VLAdapter)
    segs = segments(a, 8)  # 12 tokens each; the second window reuses segments 2..5
    picked = []
    original = WindowPrefill._choose

    def spy(self, lay, candidates, k):
        refresh = original(self, lay, candidates, k)
        picked.extend(lay.keys[i] for i in refresh.nonzero().flatten().tolist())
        return refresh

    monkeypatch.setattr(WindowPrefill, "_choose", spy)
    stats = slide(a, "vlcache", 0.25, segs)[-1][2]
    assert stats.refreshed == 4 * 3  # ceil(0.25 * 12) per reused segment
    assert sorted(picked) == sorted((seg, 0, c) for seg in range(2, 6) for c in range(3))  # first row, first 3


def test_bad_settings_are_config_errors():
    a = tiny(Qwen25VLAdapter)
    for kwargs in ({"policy": "lru"}, {"budget": 1.5}, {"full_every": 0}, {"policy": "deviation", "check_layer": 2}):
        with pytest.raises(ConfigError):
            WindowPrefill(a, SYSTEM, **kwargs)
    wp = WindowPrefill(a, SYSTEM, policy="full", yes_no=YES_NO)
    kv = wp.prefill(Window(segments(a, 2)))[0]
    with pytest.raises(ConfigError, match="max_new_tokens"):
        wp.ask(kv, [QUESTION], max_new_tokens=-1)
    for questions in ([], [QUESTION, []]):
        with pytest.raises(ConfigError, match="at least one question"):
            wp.ask(kv, questions)
    from codecsight.prefill.engine import ask_many, prefill_many
    assert ask_many([]) == [] and prefill_many([]) == []


def test_answers_stop_at_a_stop_token(monkeypatch):
    a = tiny(Qwen25VLAdapter)
    wp = WindowPrefill(a, SYSTEM, policy="full", yes_no=YES_NO)
    kv, _ = wp.prefill(Window(segments(a, 2)))
    free = wp.ask(kv, [QUESTION, [41, 42]], max_new_tokens=5)
    assert [len(x.ids) for x in free] == [5, 5]
    stop = free[0].ids[-1]
    monkeypatch.setattr(a.model.generation_config, "eos_token_id", stop)
    stopped = wp.ask(kv, [QUESTION, [41, 42]], max_new_tokens=5)
    assert stopped[0].ids == free[0].ids[:free[0].ids.index(stop) + 1]  # the stop token ends the answer
    assert stopped[1].ids == free[1].ids[:len(stopped[1].ids)]  # the other question is unaffected
    assert stopped[0].text == a.decode(stopped[0].ids[:-1])  # the text ends before the stop token


def test_segments_from_the_pruned_vit_prefill_like_the_stock_model():
    """The vision side's output (kept tokens, Qwen3-VL deepstack features) as segments, slid with reuse and
    everything refreshed, equals a stock full prefill."""
    import numpy as np

    from codecsight.vision.encoder import EncodeRequest, PrunedViT

    a = tiny(Qwen3VLAdapter)
    rng = np.random.default_rng(0)
    requests = [EncodeRequest("cam", rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8),
                              None if i == 0 else rng.random((2, 3)) < 0.6) for i in range(5)]
    segs = [Segment.from_encoded(i, e, seconds=float(i)) for i, e in enumerate(PrunedViT(a).encode(requests))]
    assert segs[0].deepstack is not None and sum(len(s.embeds) for s in segs) < 5 * 6
    window, answer, stats, _ = slide(a, "random", 1.0, segs, width=3, stride=2)[-1]
    assert stats.new < stats.tokens
    assert (answer.logits - full_logits(a, window)).abs().max() <= 1e-4


@pytest.mark.parametrize("adapter_class", FAMILIES)
def test_streams_prefilled_together_equal_each_alone(adapter_class):
    """prefill_many batches the windows of several streams (different lengths, policies and reuse states, so
    padded rows and stages over different layers) and must give each stream exactly what it gets alone."""
    from codecsight.prefill.engine import prefill_many

    a = tiny(adapter_class)
    streams = [("deviation", segments(a, 8, keep=0.6, seed=1)), ("codec", segments(a, 8, seed=2)),
               ("full", segments(a, 6, keep=0.8, seed=3))]

    def make():
        return [WindowPrefill(a, SYSTEM, policy=p, budget=0.3, yes_no=YES_NO) for p, _ in streams]

    alone, together = make(), make()
    for w in range(2):
        windows = [Window(segs[w * 2:w * 2 + 4 + i], w) for i, (_, segs) in enumerate(streams)]
        one = [wp.prefill(win) for wp, win in zip(alone, windows)]
        many = prefill_many(list(zip(together, windows)))
        for (kv1, s1), (kv2, s2) in zip(one, many):
            assert s1 == s2 and kv1.keys == kv2.keys and torch.equal(kv1.positions, kv2.positions)
            for x, y in zip(kv1.k + kv1.v, kv2.k + kv2.v):
                assert (x - y).abs().max() <= 1e-5
    assert [s.policy for _, s in many] == ["deviation", "codec", "full"]  # the second windows reused KV


@pytest.mark.parametrize("adapter_class", FAMILIES)
@pytest.mark.parametrize("max_new_tokens", [0, 3])
def test_windows_asked_together_equal_each_alone(adapter_class, max_new_tokens):
    """ask_many pads windows of different lengths with different numbers and lengths of questions into one batch;
    every answer (text, ids, P(Yes), first logits) must equal the window asked alone."""
    from codecsight.prefill.engine import ask_many

    a = tiny(adapter_class)
    jobs = []
    for i, (n, qs) in enumerate([(4, [QUESTION, [21, 22, 24, 25, 26]]), (6, [[41, 42]]),
                                 (3, [[21, 22, 23], [21, 22, 27], [21, 29]])]):
        wp = WindowPrefill(a, SYSTEM, policy="full", yes_no=YES_NO)
        kv, _ = wp.prefill(Window(segments(a, n, keep=0.7, seed=i)))
        jobs.append((wp, kv, qs))
    together = ask_many(jobs, max_new_tokens)
    for (wp, kv, qs), answers in zip(jobs, together):
        for x, y in zip(wp.ask(kv, qs, max_new_tokens), answers, strict=True):
            assert x.text == y.text and x.ids == y.ids and x.p_yes == pytest.approx(y.p_yes, abs=1e-5)
            assert (x.logits - y.logits).abs().max() <= 1e-4
    other = WindowPrefill(a, SYSTEM, policy="full", yes_no=YES_NO[::-1])  # the same model scoring other ids
    with pytest.raises(ConfigError, match="same model"):
        ask_many([jobs[0], (other, jobs[1][1], jobs[1][2])], max_new_tokens)
