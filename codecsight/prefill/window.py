"""What a window is made of, and its flat token layout.

A window is [system prompt][frame segment 1]...[frame segment W][question]. A segment is one temporal patch's
visual embeddings (all of its token grid, or only the tokens kept after pruning) with their grid coordinates.
The family adapter decides the text around the segments (vision start/end tokens, timestamps, "FrameN:") and how
segments group into vision blocks; `build_layout` turns that into one flat sequence with a stable identity per
token, which is what KV reuse matches on across windows.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import torch

from codecsight.prefill.positions import TextRun, VisionBlock, plan


@dataclass
class Segment:
    """One temporal patch of visual tokens ready for the LLM.

    key: identity across windows (e.g. the index of its first sampled frame); the runtime gives a re-encoded
    temporal patch a new key. embeds: (n, hidden) in raster order of the tokens present; coords: (n, 2) long
    (row, col) of each on the full token grid (rows, cols); the temporal coordinate is the segment's place in
    its window, which the position planner numbers. seconds: stream time of the temporal patch.
    anchor: a key-frame segment (the `anchors` policy recomputes these first).
    changed: (n,) bool, set by the runtime from the codec change map: tokens whose visual content changed, so their
    KV leans most on the context the slide removed (the `codec` policy recomputes these first).
    deepstack: Qwen3-VL's per-layer visual features (each (n, hidden)), added after the first LLM layers; kept
    here so recomputed tokens get them again.
    """

    key: Hashable
    embeds: torch.Tensor
    coords: torch.Tensor
    grid: tuple[int, int]
    seconds: float = 0.0
    anchor: bool = False
    changed: torch.Tensor | None = None
    deepstack: list[torch.Tensor] | None = None

    @staticmethod
    def full_coords(rows: int, cols: int) -> torch.Tensor:
        r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        return torch.stack([r.flatten(), c.flatten()], dim=1)

    @classmethod
    def from_encoded(cls, key: Hashable, encoded, **kwargs) -> "Segment":
        """From the vision side's EncodedPatch (codecsight.vision.encoder): the tokens it encoded, at their
        raster indices on its grid. kwargs: seconds, anchor, changed."""
        cols = encoded.grid[1]
        index = encoded.token_index.long()
        return cls(key, encoded.embeds, torch.stack([index // cols, index % cols], dim=1), tuple(encoded.grid),
                   deepstack=list(encoded.deepstack) or None, **kwargs)

    def __post_init__(self):
        n = self.embeds.shape[0]
        if self.coords.shape != (n, 2):
            raise ValueError(f"segment {self.key!r}: coords {tuple(self.coords.shape)} for {n} embeddings")
        if self.changed is not None and self.changed.shape != (n,):
            raise ValueError(f"segment {self.key!r}: changed flags {tuple(self.changed.shape)} for {n} tokens")


@dataclass
class Window:
    """The segments of one window, oldest first. index: running window number on the stream."""

    segments: list[Segment]
    index: int = 0


@dataclass(frozen=True)
class Text:
    """A run of text tokens; key names its owner and role (e.g. ("system",) or (segment_key, "pre"))."""

    ids: tuple[int, ...]
    key: Hashable


@dataclass(frozen=True)
class Vision:
    """Segments laid out as one visual input (one vision block), in temporal order."""

    segments: tuple[Segment, ...]


@dataclass
class Layout:
    """A window (without its question) as one flat sequence of L tokens.

    keys: per-token identity, equal across windows iff the token is the same input (same text in the same role,
    or the same grid cell of the same segment). positions: (3, L). cursor: where the question starts.
    visual / anchor / changed: (L,) bool. deepstack: per deepstack layer, (n_visual, hidden) in sequence order.
    """

    embeds: torch.Tensor
    keys: list[Hashable]
    positions: torch.Tensor
    cursor: int
    visual: torch.Tensor
    anchor: torch.Tensor
    changed: torch.Tensor
    deepstack: list[torch.Tensor] | None

    def __len__(self) -> int:
        return len(self.keys)


def build_layout(adapter, window: Window, system_ids: list[int]) -> Layout:
    pieces = adapter.window_pieces(window, system_ids)
    embeds, keys, items, visual, anchor, changed, deep = [], [], [], [], [], [], []
    for piece in pieces:
        if isinstance(piece, Text):
            embeds.append(adapter.embed_text(piece.ids))
            keys += [(piece.key, piece.ids, i) for i in range(len(piece.ids))]
            items.append(TextRun(len(piece.ids)))
            n = len(piece.ids)
            visual.append(torch.zeros(n, dtype=torch.bool))
            anchor.append(torch.zeros(n, dtype=torch.bool))
            changed.append(torch.zeros(n, dtype=torch.bool))
            continue
        grid = piece.segments[0].grid
        coords = []
        for t, seg in enumerate(piece.segments):
            if seg.grid != grid:
                raise ValueError(f"segments of one vision block differ in grid: {seg.grid} vs {grid}")
            n = seg.embeds.shape[0]
            embeds.append(seg.embeds)
            keys += [(seg.key, r, c) for r, c in seg.coords.tolist()]
            coords.append(torch.cat([torch.full((n, 1), t), seg.coords.long()], dim=1))
            visual.append(torch.ones(n, dtype=torch.bool))
            anchor.append(torch.full((n,), seg.anchor))
            changed.append(seg.changed.bool() if seg.changed is not None else torch.zeros(n, dtype=torch.bool))
            if seg.deepstack is not None:
                deep.append(seg.deepstack)
        items.append(VisionBlock((len(piece.segments), *grid), torch.cat(coords)))
    positions, cursor = plan(items, adapter.position_rule(window))
    n_visual = int(sum(v.sum() for v in visual))
    deepstack = None
    if deep:
        if sum(d[0].shape[0] for d in deep) != n_visual:
            raise ValueError("deepstack features are given for some segments of the window but not for all")
        deepstack = [torch.cat(layer) for layer in zip(*deep)]
    return Layout(torch.cat(embeds), keys, positions, cursor, torch.cat(visual), torch.cat(anchor),
                  torch.cat(changed), deepstack)
