"""Token plan: each rule on hand-made change maps."""
import numpy as np
import pytest

from codecsight.errors import ConfigError
from codecsight.geometry import INTERNVL3, QWEN2_5_VL
from codecsight.plan import PlanConfig, TokenPlanner
from codecsight.signals.frame import TokenChange

GRID = (4, 5)


def change(*cells, full=False, key=False, score=10.0, index=0):
    changed = np.zeros(GRID, bool)
    for r, c in cells:
        changed[r, c] = True
    if full:
        changed[:] = True
    return TokenChange(changed, np.where(changed, np.float32(np.inf if full else score), np.float32(0)), full,
                       key=key, index=index)


def cells(keep):
    return set(zip(*map(list, np.nonzero(keep))))


def run(planner, changes):
    return [p for p in map(planner.push, changes) if p is not None]


def test_qwen_union_over_two_frames():
    planner = TokenPlanner(QWEN2_5_VL, PlanConfig(sticky=False))
    assert planner.push(change(full=True, index=0)) is None  # half a temporal patch: nothing yet
    key = planner.push(change(index=1))
    assert key.reason == "full" and key.kept == key.total == 20 and key.frames == (0, 1) and key.index == 0
    assert planner.push(change((0, 0), index=2)) is None
    plan = planner.push(change((3, 4), index=3))
    assert plan.reason == "changed" and cells(plan.keep) == {(0, 0), (3, 4)} and plan.changed.sum() == 2
    assert plan.index == 1 and plan.frames == (2, 3)


def test_internvl_one_frame_per_patch():
    planner = TokenPlanner(INTERNVL3, PlanConfig(sticky=False))
    plans = run(planner, [change(full=True), change((1, 1)), change()])
    assert [p.reason for p in plans] == ["full", "changed", "changed"]
    assert [p.kept for p in plans] == [20, 1, 0]


def test_key_frame_in_either_frame_is_full():
    planner = TokenPlanner(QWEN2_5_VL, PlanConfig())
    plans = run(planner, [change(full=True), change(), change(), change(full=True)])
    assert [p.reason for p in plans] == ["full", "full"] and all(p.kept == 20 for p in plans)


def test_gop_sticky_until_next_full():
    planner = TokenPlanner(INTERNVL3, PlanConfig(sticky=True))
    plans = run(planner, [change(full=True), change((0, 0)), change((1, 1)), change(), change(full=True), change()])
    assert [cells(p.keep) for p in plans[1:4]] == [{(0, 0)}, {(0, 0), (1, 1)}, {(0, 0), (1, 1)}]
    assert plans[1].changed.sum() == 1 and plans[3].changed.sum() == 0
    assert plans[4].reason == "full" and plans[5].kept == 0  # the key frame cleared the sticky mask
    off = run(TokenPlanner(INTERNVL3, PlanConfig(sticky=False)), [change(full=True), change((0, 0)), change()])
    assert off[2].kept == 0


def test_scene_cut_is_full_and_clears_sticky():
    cfg = PlanConfig(cut_fraction=0.5)
    planner = TokenPlanner(INTERNVL3, cfg)
    many = [(r, c) for r in range(4) for c in range(3)]  # 12 of 20 tokens: 0.6 > 0.5
    ten = [(r, c) for r in range(2) for c in range(5)]  # exactly 0.5: not a cut
    plans = run(planner, [change(full=True), change((3, 4)), change(*many), change(), change(*ten)])
    assert [p.reason for p in plans] == ["full", "changed", "cut", "changed", "changed"]
    assert plans[2].kept == 20 and plans[3].kept == 0 and plans[4].kept == 10
    never = run(TokenPlanner(INTERNVL3, PlanConfig(cut_fraction=None)), [change(full=True), change(*many)])
    assert never[1].reason == "changed" and never[1].kept == 12


def test_cut_is_judged_per_frame_not_on_the_union():
    planner = TokenPlanner(QWEN2_5_VL, PlanConfig(cut_fraction=0.5))
    left = [(r, c) for r in range(4) for c in range(2)]  # 8 / 20 each, 16 / 20 together
    right = [(r, c) for r in range(4) for c in range(3, 5)]
    plans = run(planner, [change(full=True), change(), change(*left), change(*right)])
    assert plans[1].reason == "changed" and plans[1].kept == 16


def test_periodic_full_every_n_patches():
    planner = TokenPlanner(INTERNVL3, PlanConfig(refresh_every=3))
    plans = run(planner, [change(full=True)] + [change((0, 1))] * 7)
    assert [p.reason for p in plans] == ["full", "changed", "changed", "periodic", "changed", "changed",
                                         "periodic", "changed"]
    assert [p.kept for p in plans] == [20, 1, 1, 20, 1, 1, 20, 1]
    cut_resets = run(TokenPlanner(INTERNVL3, PlanConfig(refresh_every=3, cut_fraction=0.5)),
                     [change(full=True), change(), change(full=True), change(), change(), change()])
    assert [p.reason for p in cut_resets] == ["full", "changed", "full", "changed", "changed", "periodic"]
    assert all(p.reason != "periodic" for p in run(TokenPlanner(INTERNVL3, PlanConfig(refresh_every=None)),
                                                   [change(full=True)] + [change()] * 40))


def test_min_score_filters_weak_changes():
    planner = TokenPlanner(INTERNVL3, PlanConfig(min_score=5.0))
    weak, strong = change((0, 0), score=3.0), change((1, 1), score=8.0)
    both = TokenChange(weak.changed | strong.changed, np.maximum(weak.score, strong.score), False)
    plans = run(planner, [change(full=True), both])
    assert cells(plans[1].keep) == {(1, 1)} and plans[1].changed.sum() == 1


def test_budget_keeps_top_scores_and_remembers_the_rest():
    planner = TokenPlanner(INTERNVL3, PlanConfig(budget=0.1, sticky=True))  # 2 of 20 tokens
    scores = {(0, 0): 1.0, (0, 1): 9.0, (2, 2): 5.0, (3, 3): 7.0}
    changed = np.zeros(GRID, bool)
    score = np.zeros(GRID, np.float32)
    for (r, c), s in scores.items():
        changed[r, c], score[r, c] = True, s
    plans = run(planner, [change(full=True), TokenChange(changed, score, False), change((1, 4), score=3.0)])
    assert cells(plans[1].keep) == {(0, 1), (3, 3)} and plans[1].changed.sum() == 4
    # the sticky mask still holds the tokens the budget dropped, with their scores: (2, 2) at 5 and the new (1, 4)
    # at 3 outrank the dropped (0, 0) at 1 and the already encoded (0, 1), (3, 3)
    assert cells(plans[2].keep) == {(2, 2), (1, 4)}
    assert run(TokenPlanner(INTERNVL3, PlanConfig(budget=0.1)), [change(full=True)])[0].kept == 20  # full ignores it


def test_flush_plans_an_incomplete_patch():
    planner = TokenPlanner(QWEN2_5_VL, PlanConfig())
    assert planner.flush() is None
    planner.push(change(full=True))
    last = planner.flush()
    assert last.reason == "full" and last.frames == (0,) and planner.flush() is None


@pytest.mark.parametrize("bad", [dict(min_score=-1), dict(cut_fraction=0), dict(cut_fraction=1.5),
                                 dict(refresh_every=0), dict(refresh_every=2.5), dict(budget=0), dict(budget=2)])
def test_bad_knobs_are_config_errors(bad):
    with pytest.raises(ConfigError):
        PlanConfig(**bad)


def test_grid_mismatch_inside_a_patch():
    planner = TokenPlanner(QWEN2_5_VL)
    planner.push(change(full=True))
    with pytest.raises(ConfigError):
        planner.push(TokenChange(np.zeros((2, 2), bool), np.zeros((2, 2), np.float32), False))


def test_key_frames_are_full_only_when_asked():
    frames = [change(full=True), change((0, 0), key=True), change((1, 1))]
    off = run(TokenPlanner(INTERNVL3, PlanConfig()), frames)
    assert [p.reason for p in off] == ["full", "changed", "changed"] and off[1].kept == 1
    on = run(TokenPlanner(INTERNVL3, PlanConfig(full_on_key=True)), frames)
    assert [p.reason for p in on] == ["full", "key", "changed"] and on[1].kept == 20
