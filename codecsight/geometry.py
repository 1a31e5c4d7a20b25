"""Token geometry: the one place that says which pixels and frames an LLM token covers.

Every other module (change map, token plan, positions, FLOP counting) asks this module, so the rule that a
Qwen2.5-VL token is 28x28 px x 2 frames lives here only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenGeometry:
    """Geometry of one model family's visual tokens.

    patch: ViT patch side in px; merge: patches merged per side into one LLM token (Qwen's 2x2 merger,
    InternVL's pixel shuffle 0.5); temporal: frames per temporal patch (Qwen 2, InternVL 1).
    """

    name: str
    patch: int
    merge: int
    temporal: int

    @property
    def token_px(self) -> int:
        return self.patch * self.merge

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Token rows and columns of a model input of this size (which must be whole tokens)."""
        if height <= 0 or width <= 0 or height % self.token_px or width % self.token_px:
            raise ValueError(
                f"{self.name}: input {width}x{height} is not a positive multiple of the {self.token_px} px token"
            )
        return height // self.token_px, width // self.token_px

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        rows, cols = self.grid(height, width)
        return rows * self.merge, cols * self.merge

    def snap(self, height: int, width: int) -> tuple[int, int]:
        """Nearest input size of whole tokens (at least one token per side)."""
        t = self.token_px
        return max(t, round(height / t) * t), max(t, round(width / t) * t)


QWEN2_5_VL = TokenGeometry("qwen2_5_vl", patch=14, merge=2, temporal=2)
QWEN3_VL = TokenGeometry("qwen3_vl", patch=16, merge=2, temporal=2)
INTERNVL3 = TokenGeometry("internvl3", patch=14, merge=2, temporal=1)
GEOMETRIES = {g.name: g for g in (QWEN2_5_VL, QWEN3_VL, INTERNVL3)}


def footprint_ranges(n_tokens: int, frame_len: int, block: int) -> list[tuple[int, int]]:
    """For each of n_tokens equal tokens along one axis of a frame of frame_len px, the half-open range of
    codec blocks (block px each) that its footprint overlaps. The model input is a resize of the whole frame,
    so token i covers frame pixels [i * frame_len / n, (i + 1) * frame_len / n)."""
    n_blocks = math.ceil(frame_len / block)
    out = []
    for i in range(n_tokens):
        x0 = i * frame_len / n_tokens
        x1 = (i + 1) * frame_len / n_tokens
        b0 = min(int(x0 // block), n_blocks - 1)
        b1 = max(b0 + 1, min(n_blocks, math.ceil(x1 / block)))
        out.append((b0, b1))
    return out


@dataclass(frozen=True)
class BlockToTokenMap:
    """Maps a per-block array of a frame onto a token grid by the maximum over each token's footprint."""

    rows: tuple[tuple[int, int], ...]
    cols: tuple[tuple[int, int], ...]

    @classmethod
    def build(cls, frame_hw: tuple[int, int], grid: tuple[int, int], block: int = 16) -> "BlockToTokenMap":
        return cls(
            tuple(footprint_ranges(grid[0], frame_hw[0], block)),
            tuple(footprint_ranges(grid[1], frame_hw[1], block)),
        )

    def max(self, blocks: np.ndarray) -> np.ndarray:
        # Separable: max over columns of each footprint, then over rows. Works for any dtype with a max.
        by_col = np.stack([blocks[:, a:b].max(axis=1) for a, b in self.cols], axis=1)
        return np.stack([by_col[a:b].max(axis=0) for a, b in self.rows], axis=0)
