"""The one position planner: rotary position ids of a window's tokens, for every model family and every path
(full prefill, KV reuse, pruned or full grids, question tokens).

A window is a sequence of text runs and vision blocks. A vision block is one or more temporal patches laid out as
one visual input (Qwen2.5-VL: the whole window is one video; Qwen3-VL and InternVL: one block per temporal patch,
separated by timestamp / "FrameN:" text). Positions are (3, L) int64: (temporal, row, col) for M-RoPE; for 1-D RoPE
all three rows are equal. Whether the three M-RoPE rows are interleaved over the frequencies (Qwen3-VL) or in
sections (Qwen2.5-VL) is the rotary embedding's business, not the planner's.

Pruned tokens keep the positions they have in the full grid, so a block advances the cursor by its full grid.

Text after a vision block (M-RoPE). Two rules exist and differ for videos whose temporal span exceeds their side:
- "vllm": the next text starts at max(position in the block) + 1 over all three rows. This is the rule of vLLM
  (`MRotaryEmbedding` / `get_mrope_input_positions`: `st_idx = llm_pos_ids_list[-1].max() + 1`) and of the original
  Qwen2.5-VL release code, so it is what the checkpoints were trained with.
- "transformers": transformers 5.23 `get_rope_index` advances by max(rows, cols) only, ignoring the temporal span
  (`current_pos += max(grid_thw[1], grid_thw[2]) // spatial_merge_size`), so for a long Qwen2.5-VL video the question
  sits at a position that lies inside the video's temporal range.
Both agree for images and for Qwen3-VL's one-temporal-patch blocks (temporal position 0), and differ for a
Qwen2.5-VL video when (T - 1) * time_interval + 1 > max(rows, cols).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

AFTER_VISION_RULES = ("vllm", "transformers")


@dataclass(frozen=True)
class PositionRule:
    """How one model family numbers positions. mrope: 3-D (t, row, col) positions, else 1-D raster order.
    time_interval: temporal position step per temporal patch within a block (Qwen2.5-VL: tokens_per_second *
    seconds per temporal patch; the product is truncated to int per patch, as both reference rules do)."""

    mrope: bool
    time_interval: float = 1.0
    after_vision: str = "vllm"

    def __post_init__(self):
        if self.after_vision not in AFTER_VISION_RULES:
            raise ValueError(f"after_vision must be one of {AFTER_VISION_RULES}, got {self.after_vision!r}")


@dataclass(frozen=True)
class TextRun:
    n: int


@dataclass(frozen=True)
class VisionBlock:
    """grid: full (T, rows, cols) of the block; coords: (n, 3) long (t, row, col) of the tokens present, in
    sequence order (all of the grid, or the kept tokens only)."""

    grid: tuple[int, int, int]
    coords: torch.Tensor


def plan(items: list[TextRun | VisionBlock], rule: PositionRule, start: int = 0) -> tuple[torch.Tensor, int]:
    """Positions (3, L) of the items in order, and the cursor where the next text token goes."""
    out, cur = [], start
    for item in items:
        if isinstance(item, TextRun):
            out.append((torch.arange(item.n) + cur).expand(3, -1))
            cur += item.n
            continue
        T, R, C = item.grid
        t, r, c = item.coords.long().unbind(-1)
        if not rule.mrope:
            out.append((cur + (t * R + r) * C + c).expand(3, -1))
            cur += T * R * C
            continue
        t_pos = (torch.arange(T, dtype=torch.float64) * rule.time_interval).long()  # int per patch, like both rules
        out.append(torch.stack([cur + t_pos[t], cur + r, cur + c]))
        if rule.after_vision == "vllm":
            cur += max(int(t_pos[-1]), R - 1, C - 1) + 1
        else:
            cur += max(R, C)
    if not out:
        return torch.zeros(3, 0, dtype=torch.long), cur
    return torch.cat(out, dim=1), cur
