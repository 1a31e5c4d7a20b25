"""The position planner against transformers' own get_rope_index, and the rules where the references differ."""
import functools

import pytest
import torch

from codecsight.models.internvl3 import InternVL3Adapter
from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
from codecsight.models.qwen3_vl import Qwen3VLAdapter
from codecsight.prefill.positions import PositionRule, TextRun, VisionBlock, plan
from codecsight.prefill.window import Segment, Window, build_layout

SYSTEM, QUESTION = [11, 12, 13], [21, 22, 23, 24]


@functools.cache
def tiny(adapter_class):
    return adapter_class.tiny()


def window(adapter, n, grid, step=1.0, keep=None):
    """n segments of random embeddings; keep: optional (n, rows*cols) bool of the tokens kept."""
    hidden = adapter.config.get_text_config().hidden_size
    segs = []
    for i in range(n):
        coords = Segment.full_coords(*grid)
        if keep is not None:
            coords = coords[keep[i]]
        segs.append(Segment(i, torch.randn(len(coords), hidden), coords, grid, seconds=i * step))
    return Window(segs)


def with_question(layout):
    q = (layout.cursor + torch.arange(len(QUESTION))).expand(3, -1)
    return torch.cat([layout.positions, q], dim=1)


@pytest.mark.parametrize("T,grid,step", [(3, (2, 3), 1.0), (6, (2, 2), 0.5), (2, (4, 5), 2.0), (4, (2, 2), 0.3)])
def test_qwen2_5_vl_matches_get_rope_index(T, grid, step, monkeypatch):
    a = tiny(Qwen25VLAdapter)
    monkeypatch.setattr(a, "after_vision", "transformers")
    cfg = a.config
    layout = build_layout(a, window(a, T, grid, step), SYSTEM)
    n = T * grid[0] * grid[1]
    ids = SYSTEM + [cfg.vision_start_token_id] + [cfg.video_token_id] * n + [cfg.vision_end_token_id] + QUESTION
    ids = torch.tensor([ids])
    types = (ids == cfg.video_token_id).int() * 2
    m = cfg.vision_config.spatial_merge_size
    ref, _ = a.model.model.get_rope_index(ids, types, video_grid_thw=torch.tensor([[T, grid[0] * m, grid[1] * m]]),
                                          second_per_grid_ts=torch.tensor([step]))
    assert torch.equal(with_question(layout), ref[:, 0])


def test_qwen2_5_vl_vllm_rule_places_text_after_the_whole_video(monkeypatch):
    """vLLM (and Qwen's release code) start the text after a video at max position + 1; transformers 5.23 at
    start + max(rows, cols), inside the video's temporal span when it is long."""
    a = tiny(Qwen25VLAdapter)
    assert a.after_vision == "vllm"  # the default
    tps = a.config.vision_config.tokens_per_second
    T, grid = 6, (2, 3)
    layout = build_layout(a, window(a, T, grid, step=1.0), SYSTEM)
    start = len(SYSTEM) + 1
    visual = layout.positions[:, start:start + T * 6]
    assert int(visual[0].max()) == start + (T - 1) * tps  # temporal rows: tokens_per_second per second
    assert int(layout.positions[0, -1]) == start + (T - 1) * tps + 1  # <|vision_end|> right after the last frame
    monkeypatch.setattr(a, "after_vision", "transformers")
    assert int(build_layout(a, window(a, T, grid), SYSTEM).positions[0, -1]) == start + max(grid)


def test_qwen3_vl_matches_get_rope_index():
    a = tiny(Qwen3VLAdapter)
    cfg = a.config
    T, grid = 3, (2, 3)
    layout = build_layout(a, window(a, T, grid), SYSTEM)
    frame = [cfg.vision_start_token_id] + [cfg.video_token_id] * 6 + [cfg.vision_end_token_id]
    ids = torch.tensor([SYSTEM + frame * T + QUESTION])
    types = (ids == cfg.video_token_id).int() * 2
    ref, _ = a.model.model.get_rope_index(ids, types, video_grid_thw=torch.tensor([[T, 4, 6]]))
    assert torch.equal(with_question(layout), ref[:, 0])
    # one temporal patch per block: the two rules agree
    coords = torch.cat([torch.zeros(6, 1, dtype=torch.long), Segment.full_coords(2, 3)], dim=1)
    items = [TextRun(2), VisionBlock((1, 2, 3), coords), TextRun(1)]
    vllm, hf = (plan(items, PositionRule(mrope=True, after_vision=r)) for r in ("vllm", "transformers"))
    assert torch.equal(vllm[0], hf[0]) and vllm[1] == hf[1]


def test_internvl_positions_are_1d_raster():
    a = tiny(InternVL3Adapter)
    layout = build_layout(a, window(a, 3, (2, 3)), SYSTEM)
    assert torch.equal(layout.positions, torch.arange(len(layout)).expand(3, -1))


@pytest.mark.parametrize("adapter_class", [Qwen25VLAdapter, Qwen3VLAdapter, InternVL3Adapter])
def test_pruned_tokens_keep_their_full_grid_positions(adapter_class):
    a = tiny(adapter_class)
    keep = torch.rand(4, 12, generator=torch.Generator().manual_seed(0)) < 0.5
    full = build_layout(a, window(a, 4, (3, 4)), SYSTEM)
    pruned = build_layout(a, window(a, 4, (3, 4), keep=keep), SYSTEM)
    where = {key: i for i, key in enumerate(full.keys)}
    idx = torch.tensor([where[key] for key in pruned.keys])
    assert len(pruned) < len(full)
    assert torch.equal(pruned.positions, full.positions[:, idx])
    assert pruned.cursor == full.cursor


def test_rule_rejects_unknown_after_vision():
    with pytest.raises(ValueError, match="after_vision"):
        PositionRule(mrope=True, after_vision="sglang")
