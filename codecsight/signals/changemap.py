"""The change map: which tokens of a model's grid changed since they were last encoded.

Rule (two stages, cheap on native camera encodes):
1. Codec candidates. Over every decoded frame since the previous sample, a macroblock is a candidate if it was
   intra-coded or moved by at least `mv_px`; a token is a candidate if any macroblock under its footprint is.
   Native encoders put noise vectors and intra blocks on static noisy areas, so candidates are generous
   (high recall, poor precision): a token without any codec evidence is skipped with no pixel work at all.
2. Pixel check of the candidates only. A candidate token changed when the mean |dY| of the worst of its
   `sub_blocks` x `sub_blocks` blocks (so that a small object moving within a token is not averaged away)
   exceeds `pixel_tau` grey levels against the previous sample (what changed since we last looked) or against the pixels
   it had when it was last encoded (slow drift must not accumulate unseen under a cached embedding).
Frames without per-block data (HEVC without libde265, damaged GOPs), the first frame and a resolution change are
full: every token changes. Key frames are not full here: native cameras send one every 1-2 s, and their blocks are
all intra, so every token becomes a candidate and the pixel check decides (the token plan may still choose to
encode key frames in full).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codecsight.errors import ConfigError
from codecsight.geometry import BlockToTokenMap, TokenGeometry
from codecsight.signals.frame import SampledFrame, TokenChange

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class ChangeRule:
    mv_px: float = 0.5  # a block is a codec candidate if it moved at least this far (px) ...
    intra: bool = True  # ... or was intra-coded: a missing vector is not low motion
    pixel_tau: float = 6.0  # mean |dY| (grey levels) against the last encoded pixels that counts as change
    verify: bool = True  # False: codec candidates are the decision (no pixel work)
    # Score a token by the worst of its sub_blocks x sub_blocks blocks (1: the whole token's mean). The worst block's
    # mean is never below the token's, so 2 flags all that 1 does (cached tokens are never staler) and the small
    # objects 1 averages away: on three held-out splits it cut the F1 gap to full from 3-4 points to 1-2 for 0.02-0.03
    # more of full's FLOPs, and cost less on the real clips than pixel_tau 4 for more F1 (docs/reference-model.md,
    # session 13).
    sub_blocks: int = 2

    def __post_init__(self):
        if not 0 <= self.mv_px <= 1024:
            raise ConfigError(f"mv_px must be within [0, 1024] px, got {self.mv_px}")
        if not 0 <= self.pixel_tau <= 255:
            raise ConfigError(f"pixel_tau must be within [0, 255] grey levels, got {self.pixel_tau}")
        if not (isinstance(self.sub_blocks, int) and self.sub_blocks >= 1):
            raise ConfigError(f"sub_blocks must be a positive int, got {self.sub_blocks}")


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ _LUMA


def token_mean_abs_diff(a: np.ndarray, b: np.ndarray, token_px: int, mask: np.ndarray | None = None,
                        sub: int = 1) -> np.ndarray:
    """Mean |a - b| per token of two (H, W) planes, of the token's worst sub x sub block (sub=1: the whole token);
    with `mask`, only the masked tokens are computed (0 elsewhere)."""
    if token_px % sub:
        raise ConfigError(f"sub_blocks {sub} does not divide the {token_px} px token")
    rows, cols, s = a.shape[0] // token_px, a.shape[1] // token_px, token_px // sub
    if mask is None:
        d = np.abs(a - b).reshape(rows, sub, s, cols, sub, s)
        return d.mean(axis=(2, 5)).max(axis=(1, 3))
    out = np.zeros((rows, cols), np.float32)
    r, c = np.nonzero(mask)
    if len(r):
        ta = a.reshape(rows, token_px, cols, token_px)[r, :, c, :]
        tb = b.reshape(rows, token_px, cols, token_px)[r, :, c, :]
        out[r, c] = np.abs(ta - tb).reshape(len(r), sub, s, sub, s).mean(axis=(2, 4)).max(axis=(1, 2))
    return out


class ChangeMap:
    """Per stream and token grid: turns sampled frames into TokenChange decisions. Holds the last encoded luma."""

    def __init__(self, geometry: TokenGeometry, input_hw: tuple[int, int], rule: ChangeRule = ChangeRule()):
        self.geometry = geometry
        self.input_hw = input_hw
        self.grid = geometry.grid(*input_hw)
        self.rule = rule
        self._map: BlockToTokenMap | None = None
        self._map_hw: tuple[int, int] | None = None
        self._frame_hw: tuple[int, int] | None = None  # frame size of the latest sample
        self._ref: np.ndarray | None = None  # luma of each token as last encoded
        self._last: np.ndarray | None = None  # luma of the previous sample
        self.candidates = 0  # tokens of non-full frames that needed a pixel check, for cost reports
        self.partial_tokens = 0  # all tokens of non-full frames

    def candidates_of(self, sampled: SampledFrame) -> np.ndarray:
        s = sampled.signal
        if self._map is None or self._map_hw != (s.height, s.width):
            self._map_hw = (s.height, s.width)
            self._map = BlockToTokenMap.build(self._map_hw, self.grid)
        moved = s.mv_max >= self.rule.mv_px
        if self.rule.intra:
            moved |= s.intra
        return self._map.max(moved)

    def update(self, sampled: SampledFrame) -> TokenChange:
        s = sampled.signal
        rows, cols = self.grid
        y = None
        if sampled.rgb is not None:
            if sampled.rgb.shape[:2] != self.input_hw:
                raise ConfigError(f"sampled frame is {sampled.rgb.shape[1]}x{sampled.rgb.shape[0]}, the change map "
                                  f"expects the model input {self.input_hw[1]}x{self.input_hw[0]}")
            y = luma(sampled.rgb)
        # The first frame, a resolution change, and a check with no reference pixels all start afresh.
        fresh = self._frame_hw != (s.height, s.width) or (self.rule.verify and y is not None and self._ref is None)
        full = not s.blocks_known or fresh
        key = s.key_frame or "I" in sampled.source_types or s.frame_type == "I"
        prev, self._last = self._last, y
        if full:
            score = np.full(self.grid, np.inf, np.float32)
            changed = np.ones(self.grid, bool)
            self._frame_hw = (s.height, s.width)
            if y is not None:
                self._ref = y.copy()  # updated in place per token (`_encoded`)
        else:
            cand = self.candidates_of(sampled)
            self.partial_tokens += rows * cols
            if self.rule.verify and y is not None:
                self.candidates += int(cand.sum())
                t, sub = self.geometry.token_px, self.rule.sub_blocks
                score = token_mean_abs_diff(y, self._ref, t, cand, sub)
                if prev is not None and prev.shape == y.shape:
                    score = np.maximum(score, token_mean_abs_diff(y, prev, t, cand, sub))
                changed = score > self.rule.pixel_tau
                self._encoded(y, changed)
            else:
                changed, score = cand, cand.astype(np.float32)
        return TokenChange(changed=changed, score=score, full=full, key=key, index=s.index, pts=s.pts)

    def encoded(self, keep: np.ndarray):
        """Feedback from the token plan: these tokens were encoded from the latest sample's pixels (the plan
        encodes more than the change map flags: sticky, periodic and cut refreshes)."""
        if self._last is not None and self._ref is not None:
            self._encoded(self._last, keep)

    def _encoded(self, y: np.ndarray, changed: np.ndarray):
        r, c = np.nonzero(changed)
        if len(r):
            (rows, cols), t = self.grid, self.geometry.token_px
            self._ref.reshape(rows, t, cols, t)[r, :, c, :] = y.reshape(rows, t, cols, t)[r, :, c, :]
