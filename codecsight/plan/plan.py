"""The token plan: from per-frame change maps to the LLM tokens each temporal patch encodes.

A temporal patch is what the ViT encodes as one unit: 2 sampled frames for Qwen, 1 for InternVL
(TokenGeometry.temporal). Its change is the union over its frames. Rules, first match wins:
1. full: a frame arrives as TokenChange.full (first frame, resolution change, unknown or damaged blocks), or with
   `full_on_key` a key frame was decoded: encode in full.
2. cut: a frame changed in more than `cut_fraction` of its tokens (scene cut, camera move, lighting switch):
   encode in full, which costs little more than the partial plan and refreshes every token.
3. periodic: `refresh_every` temporal patches since the last full encoding: encode in full, which bounds the
   drift of cached embeddings whose change stayed under the thresholds.
4. changed: the tokens that changed (score above `min_score`), plus with `sticky` every token that changed
   since the last full encoding (GOP-sticky), cut to the `budget` highest scores.
The motion threshold and the intra rule belong to the change map (ChangeRule.mv_px, ChangeRule.intra): a token
over an intra block arrives already changed, and one rule lives in one place.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from codecsight.errors import ConfigError
from codecsight.geometry import TokenGeometry
from codecsight.signals.frame import TokenChange

REASONS = ("full", "key", "cut", "periodic", "changed")


@dataclass(frozen=True)
class PlanConfig:
    """Knobs of the token plan.

    min_score: a changed token is kept only if its change score exceeds this (0: take the change map's decision).
    full_on_key: encode every temporal patch that holds a key frame in full (the published design, which
    re-encodes streams with GOP = stride). Off: native cameras send a key frame every 1-2 s, so on the shared
    person clip (GOP 1 s) every temporal patch holds one and the plan encoded 100% of tokens with it on against
    0.263 with it off (0.6% of tokens over 6 grey levels stale). Key frames are still checked token by token:
    all their blocks are intra, so every token is a candidate of the change map's pixel check.
    sticky: GOP-sticky accumulation: once changed, a token is kept until the next full encoding.
    cut_fraction: a frame with more than this fraction of its tokens changed is a scene cut (None: never).
    refresh_every: at least one full encoding every this many temporal patches (None: only key frames and cuts).
    budget: at most this fraction of a temporal patch's tokens in a partial plan, highest scores first (None: all).

    Defaults, measured on the three shared clips (2 fps, 448x448, Qwen2.5-VL geometry, the ChangeRule of then
    (token mean, before sub-blocks), the change map's reference pixels following what the plan encoded;
    /work/notes/helper-flops-plan-measure.py):
    cost = encoded token fraction, staleness = mean |dY| between a token's current pixels and those it was last
    encoded from. sticky off: the change map already compares against the last *encoded* pixels, so drift is caught
    without it; on the bottle clip sticky raised the cost from 0.535 to 0.716 (N=8) and only lowered staleness
    that was already under the change threshold (mean 1.33 -> 0.78 grey levels; tokens over 6: 0.1% either way).
    refresh_every 8 temporal patches: one full encoding per 16-frame window, which bounds the context drift of
    cached embeddings that pixels cannot show (cost +2.7 points on bottle against 16). cut_fraction 0.6: 0.4
    cost +4.6 points on bottle for a mean staleness 1.33 -> 1.14; 0.8 saved 3 points.
    A budget trades staleness for cost steeply (bottle at 0.25: cost 0.47, 11% of tokens over 6): off.
    """

    min_score: float = 0.0
    full_on_key: bool = False
    sticky: bool = False
    cut_fraction: float | None = 0.6
    refresh_every: int | None = 8
    budget: float | None = None

    def __post_init__(self):
        if not self.min_score >= 0:
            raise ConfigError(f"min_score must be >= 0, got {self.min_score}")
        if self.cut_fraction is not None and not 0 < self.cut_fraction <= 1:
            raise ConfigError(f"cut_fraction must be in (0, 1] or None, got {self.cut_fraction}")
        if self.refresh_every is not None and not (isinstance(self.refresh_every, int) and self.refresh_every >= 1):
            raise ConfigError(f"refresh_every must be a positive int or None, got {self.refresh_every}")
        if self.budget is not None and not 0 < self.budget <= 1:
            raise ConfigError(f"budget must be in (0, 1] or None, got {self.budget}")


@dataclass
class PatchPlan:
    """What one temporal patch encodes.

    keep: bool (rows, cols) over the LLM-token grid; reason: one of REASONS; changed: bool (rows, cols), the tokens
    the change maps flagged (union over the frames, after min_score; a full encoding keeps more); frames:
    TokenChange.index of each frame in the patch.
    """

    index: int
    keep: np.ndarray
    reason: str
    changed: np.ndarray
    frames: tuple[int, ...]

    @property
    def full(self) -> bool:
        return self.reason != "changed"

    @property
    def fresh(self) -> np.ndarray:
        """The tokens that changed and were encoded: what a dropped grid's `linger` counts from (a full encoding
        also refreshes tokens that did not change; a budget may leave changed ones out)."""
        return self.changed & self.keep

    @property
    def kept(self) -> int:
        return int(self.keep.sum())

    @property
    def total(self) -> int:
        return self.keep.size


class TokenPlanner:
    """The plan of one stream, online: push each sampled frame's change map; a PatchPlan comes back whenever a
    temporal patch is complete. Holds the sticky mask and the count of patches since the last full encoding."""

    def __init__(self, geometry: TokenGeometry, config: PlanConfig = PlanConfig()):
        self.temporal = geometry.temporal
        self.config = config
        self.patches = 0  # temporal patches planned so far
        self._pending: list[TokenChange] = []
        self._sticky: np.ndarray | None = None  # tokens changed since the last full encoding
        self._stale: np.ndarray | None = None  # largest change score of each token since it was last encoded
        self._since_full = 0

    def push(self, change: TokenChange) -> PatchPlan | None:
        if self._pending and change.changed.shape != self._pending[0].changed.shape:
            raise ConfigError(f"change map grid {change.changed.shape} differs from {self._pending[0].changed.shape}"
                              " within one temporal patch")
        self._pending.append(change)
        return self.flush() if len(self._pending) == self.temporal else None

    def flush(self) -> PatchPlan | None:
        """Plan the frames pushed so far as one temporal patch (at stream end: a last, incomplete patch)."""
        if not self._pending:
            return None
        frames, self._pending = self._pending, []
        plan = self._plan(frames)
        self.patches += 1
        return plan

    def _plan(self, frames: Sequence[TokenChange]) -> PatchPlan:
        changed = [f.changed & (f.score > self.config.min_score) for f in frames]
        union = np.logical_or.reduce(changed)
        if self._sticky is None or self._sticky.shape != union.shape:
            self._forget(union.shape)
        reason = self._reason(frames, changed)
        if reason == "changed":
            self._since_full += 1
            keep = self._partial(union, np.max([f.score for f in frames], axis=0))
        else:
            self._since_full = 0
            self._forget(union.shape)
            keep = np.ones_like(union)
        return PatchPlan(self.patches, keep, reason, union.copy(), tuple(f.index for f in frames))  # keep may be union

    def _forget(self, shape: tuple[int, int]):
        """After a full encoding every token is fresh: nothing sticky, nothing stale."""
        self._sticky = np.zeros(shape, bool)
        self._stale = np.zeros(shape, np.float32)

    def _reason(self, frames: Sequence[TokenChange], changed: list[np.ndarray]) -> str:
        cfg = self.config
        if any(f.full for f in frames):
            return "full"
        if cfg.full_on_key and any(f.key for f in frames):
            return "key"
        if cfg.cut_fraction is not None and max(c.mean() for c in changed) > cfg.cut_fraction:
            return "cut"
        if cfg.refresh_every is not None and self._since_full + 1 >= cfg.refresh_every:
            return "periodic"
        return "changed"

    def _partial(self, union: np.ndarray, score: np.ndarray) -> np.ndarray:
        cfg = self.config
        keep = union | self._sticky if cfg.sticky else union
        if cfg.sticky:
            self._sticky = keep.copy()
        # Rank by the largest change a token saw since it was last encoded, so that a change the budget dropped
        # competes again later with its own score.
        stale = np.maximum(self._stale, np.where(union, score, 0))
        limit = int(cfg.budget * keep.size) if cfg.budget is not None else keep.size
        if keep.sum() > limit:  # the `limit` highest among the candidates (stable: raster order on ties)
            order = np.argsort(-np.where(keep, stale, -np.inf), axis=None, kind="stable")
            keep = np.zeros_like(keep)
            keep.flat[order[:limit]] = True
        self._stale = np.where(keep, 0, stale).astype(np.float32)
        return keep


def planned_samples(path: str, geometry: TokenGeometry, size: tuple[int, int], fps: float = 2.0,
                    config: PlanConfig = PlanConfig()):
    """A file sampled and planned as the runtime does (the change map told what each plan encoded): per sampled
    frame, (the frame, its token change, the plan of the temporal patch it completes or None)."""
    from codecsight.signals import ChangeMap, Sampling, sample_frames

    cmap, planner = ChangeMap(geometry, size), TokenPlanner(geometry, config)
    for s in sample_frames(path, Sampling(fps, size)):
        change = cmap.update(s)
        if (plan := planner.push(change)) is not None:
            cmap.encoded(plan.keep)
        yield s, change, plan


def plan_file(path: str, geometry: TokenGeometry, size: tuple[int, int], fps: float = 2.0,
              config: PlanConfig = PlanConfig()) -> tuple[np.ndarray, list[PatchPlan]]:
    """The sampled RGB frames (N, H, W, 3) of a whole file and one plan per complete temporal patch."""
    steps = list(planned_samples(path, geometry, size, fps, config))
    return np.stack([s.rgb for s, _, _ in steps]), [p for _, _, p in steps if p is not None]
