"""Pruned ViT encoding: the vision tower runs on whole merged tokens only.

Two modes:
- `isolated`: the kept tokens' patches run alone, with their original positions (the published design);
- `context`: kept tokens also attend to the per-layer keys/values of the unchanged tokens cached from that
  stream's last encoding (higher fidelity at about the same FLOPs: the cached keys cost no projection or MLP).

One `encode` call packs every temporal patch of every stream it is given. Attention groups (a temporal patch, or
one of its windows) of similar length run as one padded batch; there is no Python loop over tokens, frames or
windows in the tower, only over a few length buckets per layer kind.
Several temporal patches of one stream in one call are encoded as if one after the other: a token a patch leaves
unchanged takes its keys/values (context) and its embedding (full-grid output) from the latest earlier patch of
the call that encoded it, else from the stream's cache.

Family-specific steps (patch embedding, positions, block internals, merger) live in the model adapters
(`ModelAdapter.vit_*`); this module only packs, routes attention and keeps the per-stream caches.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Hashable

import numpy as np
import torch
import torch.nn.functional as F

from codecsight.errors import ConfigError

MODES = ("isolated", "context")


@dataclass
class EncodeRequest:
    """One temporal patch of one stream: its frames at the model input size and the tokens to encode."""

    stream: Hashable
    frames: np.ndarray  # (geometry.temporal, H, W, 3) uint8; a short group repeats its last frame
    keep: np.ndarray | None = None  # bool (rows, cols); None: every token


@dataclass
class EncodedPatch:
    """What the ViT produced for one request."""

    stream: Hashable
    grid: tuple[int, int]  # token rows, cols
    token_index: torch.Tensor  # (k,) long: raster indices of the encoded tokens (kept, or all if forced full)
    embeds: torch.Tensor  # (k, D) their merged embeddings
    deepstack: list[torch.Tensor] = field(default_factory=list)  # Qwen3-VL: (k, D) per deepstack layer
    full_embeds: torch.Tensor | None = None  # (rows*cols, D): fresh where encoded, cached elsewhere
    full_deepstack: list[torch.Tensor] | None = None


@dataclass
class PackedBatch:
    """The kept tokens of one call, packed; what the adapters' `vit_*` steps consume.

    Token k of the batch belongs to segment (request) `segment[k]` at token (row[k], col[k]); its merge**2
    patches are rows 4k..4k+3 of `patches` (patch rows inside a token in raster order)."""

    patches: torch.Tensor  # (K * merge**2, patch_dim) pixel values
    segment: torch.Tensor  # (K,) long
    row: torch.Tensor  # (K,) long
    col: torch.Tensor  # (K,) long
    grids: list[tuple[int, int]]  # token (rows, cols) per segment
    merge: int

    @property
    def n_tokens(self) -> int:
        return len(self.segment)

    def patch_coords(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch row, patch col) of every patch row in its segment's patch grid."""
        m = self.merge
        sub = torch.arange(m * m).repeat(self.n_tokens)
        return (self.row.repeat_interleave(m * m) * m + sub // m,
                self.col.repeat_interleave(m * m) * m + sub % m)

    def windows(self, side: int) -> torch.Tensor:
        """Window id of every kept token for window attention of `side` tokens: ordered by segment, then
        window row, window col (the order transformers' `get_vision_window_index` uses)."""
        n_wr = max(-(-r // side) for r, _ in self.grids)
        n_wc = max(-(-c // side) for _, c in self.grids)
        return (self.segment * n_wr + self.row // side) * n_wc + self.col // side


@dataclass
class _StreamCache:
    grid: tuple[int, int]
    embeds: torch.Tensor  # (rows*cols, D)
    deepstack: torch.Tensor | None  # (n_taps, rows*cols, D)
    kv: torch.Tensor | None  # (layers, 2, patches, heads, head_dim), context mode only
    complete: bool  # every token of the grid has been encoded at least once


class PrunedViT:
    """Encodes temporal patches of many streams, each on its kept tokens only.

    Memory: one cache per stream holds the last embeddings of its grid (and, in context mode, every layer's
    keys/values: layers x 2 x patches x hidden values); at most `max_streams` are kept (least recently used
    dropped first; a dropped stream is encoded in full next time), and `end_stream` frees one at once.
    """

    def __init__(self, adapter, mode: str = "isolated", max_streams: int = 16):
        if mode not in MODES:
            raise ConfigError(f"pruned ViT mode must be one of {MODES}, got {mode!r}")
        if max_streams < 1:
            raise ConfigError(f"max_streams must be >= 1, got {max_streams}")
        self.adapter, self.mode, self.max_streams = adapter, mode, max_streams
        self._caches: OrderedDict[Hashable, _StreamCache] = OrderedDict()

    def end_stream(self, stream: Hashable) -> None:
        self._caches.pop(stream, None)

    def snapshot(self) -> OrderedDict:
        """The per-stream caches as they are now (caches are replaced by `encode`, never changed in place)."""
        return OrderedDict(self._caches)

    def restore(self, snapshot: OrderedDict) -> None:
        self._caches = OrderedDict(snapshot)

    @property
    def cache_bytes(self) -> int:
        tensors = [t for c in self._caches.values() for t in (c.embeds, c.deepstack, c.kv) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)

    @torch.no_grad()
    def encode(self, requests: list[EncodeRequest], full_grid: bool = False) -> list[EncodedPatch]:
        """Encode every request in one packed pass. `full_grid` also returns each patch's whole token grid,
        cached embeddings standing in for the unchanged tokens."""
        geometry = self.adapter.geometry
        grids, tokens, pixels, complete = [], [], [], []
        # Streams whose cache covers their whole grid, updated as the requests are taken in order.
        have = {s: c.grid for s, c in self._caches.items() if c.complete}
        for req in requests:
            frames = np.asarray(req.frames)
            if frames.ndim != 4 or len(frames) > geometry.temporal:
                raise ConfigError(f"a request holds one temporal patch: at most {geometry.temporal} frames "
                                  f"(T, H, W, 3), got shape {frames.shape}")
            try:
                grid = geometry.grid(*frames.shape[1:3])
            except ValueError as e:
                raise ConfigError(str(e)) from None
            keep = np.ones(grid, bool) if req.keep is None else np.asarray(req.keep, bool)
            if keep.shape != grid:
                raise ConfigError(f"keep mask {keep.shape} does not match the token grid {grid}")
            # Without a cache of this grid the unchanged tokens have nothing to stand for them: encode all.
            if (self.mode == "context" or full_grid) and have.get(req.stream) != grid:
                keep = np.ones(grid, bool)
            if keep.all() or have.get(req.stream) == grid:
                have[req.stream] = grid
            else:
                have.pop(req.stream, None)
            complete.append(have.get(req.stream) == grid)
            grids.append(grid)
            tokens.append(np.flatnonzero(keep))
            pixels.append(self.adapter.pixel_values(frames, tokens[-1])[0])

        seg = torch.from_numpy(np.repeat(np.arange(len(tokens)), [len(t) for t in tokens]))
        flat = torch.from_numpy(np.concatenate(tokens)) if tokens else torch.zeros(0, dtype=torch.long)
        cols = torch.tensor([g[1] for g in grids], dtype=torch.long)[seg] if len(seg) else seg
        # Index tensors stay on the CPU; the adapters move what enters the model to its device.
        batch = PackedBatch(
            patches=torch.cat(pixels).to(self.adapter.model.device),
            segment=seg, row=flat // cols, col=flat % cols, grids=grids, merge=geometry.merge)

        context = _Context(self, requests, grids, tokens) if self.mode == "context" else None
        if batch.n_tokens == 0:
            embeds = torch.zeros(0, self.adapter.vit_out_dim, dtype=self.adapter.model.dtype,
                                 device=self.adapter.model.device)
            deepstack = [embeds] * len(self.adapter.vit_taps)
        else:
            embeds, deepstack = run_blocks(self.adapter, batch, context)
        return self._results(requests, grids, tokens, complete, embeds, deepstack, context, full_grid)

    def _results(self, requests, grids, tokens, complete, embeds, deepstack, context, full_grid):
        bounds = np.cumsum([0] + [len(t) for t in tokens])
        out = []
        for i, (req, grid, tok) in enumerate(zip(requests, grids, tokens)):
            part = slice(bounds[i], bounds[i + 1])
            e = embeds[part]
            ds = [d[part] for d in deepstack]
            index = torch.from_numpy(tok)
            cache = self._caches.get(req.stream)
            if cache is None or cache.grid != grid:
                n = grid[0] * grid[1]
                cache = _StreamCache(grid, e.new_zeros(n, e.shape[-1]),
                                     torch.stack(ds).new_zeros(len(ds), n, e.shape[-1]) if ds else None, None,
                                     complete[i])
            else:  # copy: earlier results of this call keep their own full grids
                cache = _StreamCache(grid, cache.embeds.clone(),
                                     None if cache.deepstack is None else cache.deepstack.clone(), cache.kv,
                                     complete[i])
            cache.embeds[index.to(e.device)] = e
            if ds:
                cache.deepstack[:, index.to(e.device)] = torch.stack(ds)
            if context is not None:
                cache.kv = context.new_kv.get(req.stream, cache.kv)
            self._store(req.stream, cache)
            result = EncodedPatch(req.stream, grid, index, e, ds)
            if full_grid:
                result.full_embeds = cache.embeds
                result.full_deepstack = list(cache.deepstack) if ds else None
            out.append(result)
        return out

    def _store(self, stream, cache: _StreamCache) -> None:
        self._caches[stream] = cache
        self._caches.move_to_end(stream)
        while len(self._caches) > self.max_streams:
            self._caches.popitem(last=False)


class _Context:
    """Where each segment's attention keys come from in context mode.

    Keys/values of a layer live in one table: the cached rows of the streams in this call, then the fresh rows
    of this call. For every segment `src[s]` gives, per patch of its grid, the table row that stands for it:
    its own fresh row if kept, else the latest earlier segment of its stream that kept it, else the cache."""

    def __init__(self, vit: PrunedViT, requests, grids, tokens):
        m2 = vit.adapter.geometry.merge ** 2
        caches = {}
        for req in requests:
            cache = vit._caches.get(req.stream)
            if req.stream not in caches and cache is not None and cache.kv is not None:
                caches[req.stream] = cache
        self.cache_k = [c.kv for c in caches.values()]
        offset, current = 0, {}
        for stream, cache in caches.items():
            current[stream] = offset + np.arange(cache.kv.shape[2])
            offset += cache.kv.shape[2]
        self.n_cached = offset
        fresh, self.src, self.src_cpu, self.last = offset, [], [], {}
        for i, (req, grid, tok) in enumerate(zip(requests, grids, tokens)):
            n = grid[0] * grid[1] * m2
            src = current.get(req.stream)
            src = np.full(n, -1) if src is None or len(src) != n else src.copy()  # -1: forced full below
            patches = (tok[:, None] * m2 + np.arange(m2)).reshape(-1)
            src[patches] = fresh + np.arange(len(patches))
            fresh += len(patches)
            current[req.stream] = src
            self.src_cpu.append(torch.from_numpy(src))  # attention groups are built on the CPU
            self.src.append(self.src_cpu[-1].to(vit.adapter.model.device))
            self.last[req.stream] = i
        self.new_kv: dict = {}

    def table(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Keys and values of `layer`: cached rows, then the fresh (kept) rows."""
        if not self.cache_k:
            return k, v
        return (torch.cat([c[layer, 0] for c in self.cache_k] + [k]),
                torch.cat([c[layer, 1] for c in self.cache_k] + [v]))

    def keep_layer(self, layer: int, n_layers: int, table_k, table_v) -> None:
        """Record each stream's grid keys/values of this layer as its new cache."""
        for stream, i in self.last.items():
            src = self.src[i]
            if stream not in self.new_kv:
                self.new_kv[stream] = table_k.new_empty((n_layers, 2, len(src)) + table_k.shape[1:])
            self.new_kv[stream][layer, 0] = table_k[src]
            self.new_kv[stream][layer, 1] = table_v[src]


def _groups(adapter, batch: PackedBatch, layer: int, context: _Context | None):
    """Attention groups of a layer as (query rows, key rows into the key table), on the CPU. A group is a
    segment, or a window of one for windowed layers; queries are its kept patches (and extra rows such as
    InternVL's CLS), keys are the same rows in isolated mode, the whole group's grid (cached where unchanged) in
    context mode."""
    m2 = batch.merge ** 2
    n, extras, side = batch.n_tokens * m2, adapter.vit_extras, adapter.vit_window(layer)
    key = batch.segment if side is None else batch.windows(side)
    order = torch.argsort(key, stable=True)
    _, counts = torch.unique_consecutive(key[order], return_counts=True)
    out = []
    for toks in torch.split(order, counts.tolist()):
        s = int(batch.segment[toks[0]])
        extra = n + s * extras + torch.arange(extras)
        q = torch.cat([_patch_rows(toks, m2), extra])
        if context is None:
            out.append((q, q))
            continue
        rows, cols = batch.grids[s]
        if side is None:
            grid_tokens = torch.arange(rows * cols)
        else:
            wr, wc = int(batch.row[toks[0]]) // side, int(batch.col[toks[0]]) // side
            r = torch.arange(wr * side, min(rows, (wr + 1) * side))
            c = torch.arange(wc * side, min(cols, (wc + 1) * side))
            grid_tokens = (r[:, None] * cols + c).reshape(-1)
        out.append((q, torch.cat([context.src_cpu[s][_patch_rows(grid_tokens, m2)], context.n_cached + extra])))
    return out


def _patch_rows(tokens: torch.Tensor, m2: int) -> torch.Tensor:
    return (tokens[:, None] * m2 + torch.arange(m2)).reshape(-1)


class _Batches:
    """Attention groups packed for batched attention: groups whose query and key counts fall in the same
    power-of-two bucket run as one padded call (a Python loop over hundreds of small windows cost more than
    their arithmetic; buckets bound the padding to under 2x per side). The index tensors are built on the CPU
    and moved to the model's device once per bucket: on a GPU each copy of a CPU tensor waits for the queue."""

    def __init__(self, groups, device):
        buckets: dict = {}
        for qi, ki in groups:
            buckets.setdefault((_bucket(len(qi)), _bucket(len(ki))), []).append((qi, ki))
        self.calls = []
        for members in buckets.values():
            (qi, q_valid), (ki, k_valid) = _padded([g[0] for g in members]), _padded([g[1] for g in members])
            # where each real query's output goes, and which outputs those are (flat indices: a boolean mask on
            # the device would make the GPU report its count back)
            rows = qi.reshape(-1) if q_valid is None else qi[q_valid]
            pick = None if q_valid is None else q_valid.reshape(-1).nonzero().flatten().to(device)
            mask = None if k_valid is None else k_valid[:, None, None, :].to(device)
            self.calls.append((qi.to(device), ki.to(device), mask, rows.to(device), pick))

    def attend(self, q, table_k, table_v, scale):
        """Scaled dot-product attention of every group over (rows, heads, head_dim) tensors."""
        out = torch.empty_like(q)
        for qi, ki, mask, rows, pick in self.calls:
            o = F.scaled_dot_product_attention(q[qi].transpose(1, 2), table_k[ki].transpose(1, 2),
                                               table_v[ki].transpose(1, 2), attn_mask=mask, scale=scale)
            o = o.transpose(1, 2).flatten(0, 1)
            out[rows] = o if pick is None else o[pick]
        return out


def _bucket(n: int) -> int:
    return max(0, n - 1).bit_length()


def _padded(rows: list[torch.Tensor]):
    """(G, L) row indices padded with each group's first row, and the (G, L) validity mask (None: no padding)."""
    longest = max(len(r) for r in rows)
    if all(len(r) == longest for r in rows):
        return torch.stack(rows), None
    index = torch.stack([F.pad(r, (0, longest - len(r)), value=int(r[0])) for r in rows])
    valid = torch.arange(longest, device=index.device) < torch.tensor([len(r) for r in rows],
                                                                      device=index.device)[:, None]
    return index, valid


def run_blocks(adapter, batch: PackedBatch, context: _Context | None = None):
    """The tower as an own loop over its blocks: isolated (context None) or attending to cached keys."""
    h, aux = adapter.vit_embed(batch)
    n_layers = adapter.vit_n_layers
    n = batch.n_tokens * batch.merge ** 2
    groups_by_kind: dict = {}
    taps = []
    for layer in range(n_layers):
        kind = adapter.vit_window(layer)
        if kind not in groups_by_kind:
            groups_by_kind[kind] = _Batches(_groups(adapter, batch, layer, context), batch.patches.device)
        q, k, v = adapter.vit_qkv(layer, h, aux)
        if context is None:
            table_k, table_v = k, v
        else:
            table_k, table_v = context.table(layer, k[:n], v[:n])
            if adapter.vit_extras:  # extra rows (CLS) are always fresh and sit after the table
                table_k, table_v = torch.cat([table_k, k[n:]]), torch.cat([table_v, v[n:]])
            context.keep_layer(layer, n_layers, table_k, table_v)
        attn = groups_by_kind[kind].attend(q, table_k, table_v, adapter.vit_scale)
        h = adapter.vit_finish(layer, h, attn)
        if layer in adapter.vit_taps:
            taps.append(adapter.vit_merge(h[:n], tap=adapter.vit_taps.index(layer)))
    return adapter.vit_merge(h[:n], tap=None), taps
