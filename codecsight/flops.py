"""Executed FLOPs of the vision tower, the merger/projector and the LLM prefill, from the model config and the
token counts that actually ran.

What is counted: every matrix product of the forward, at 2 FLOPs per multiply-add (2*m*n*k): the linear layers
(bias additions not counted), the patch-embedding convolution, and the two attention products Q K^T and A V
(4 * head_dim FLOPs per query head and attended query-key pair). Elementwise work (norms, activations, rotary,
softmax, residuals, position-embedding interpolation) is not counted: it is O(tokens * hidden) against the
O(tokens * hidden^2) of the products, and torch.utils.flop_counter.FlopCounterMode ignores it too, so every count
here can be checked against that counter (`flop_counter_errors`).

Attention is counted per query-key pair attended. A ViT pair count is what a variable-length kernel executes; our
CPU encoder pads groups of similar length into one batched call and so also multiplies padding (bounded, tested).
For the causal LLM, `prefill_work` counts by default the pairs a query may attend (keys at or before its own
slot): the work that must be done, and what block-skipping kernels (FlashAttention) execute up to block rounding.
A dense kernel with an additive mask (CPU SDPA math, eager) multiplies every query by every key in the cache;
`prefill_work(..., dense_keys=n)` counts that, and that is what FlopCounterMode sees.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from codecsight.errors import ConfigError


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one step, split where the savings differ: vision tower, merger/projector, LLM prefill."""

    vit: int = 0
    merger: int = 0
    llm: int = 0

    @property
    def total(self) -> int:
        return self.vit + self.merger + self.llm

    def __add__(self, other: "FlopCount") -> "FlopCount":
        return FlopCount(self.vit + other.vit, self.merger + other.merger, self.llm + other.llm)


# ---- what the config says ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TowerSpec:
    """The widths of a vision tower and its merger that its FLOPs depend on.

    patch_in: input values per patch (channels x frames x patch^2), the patch embedding's fan-in.
    mlp_mats: 3 for a gated MLP (gate, up, down), 2 for fc1/fc2.
    window: side of a windowed-attention window in LLM tokens (Qwen2.5-VL), 0 for towers without windows;
    window_layers: how many of the `depth` layers attend within windows (the rest attend over the whole frame).
    merge: patches per side merged into one LLM token; cls: tokens added per frame (InternViT's CLS).
    merger: (fan-in, fan-out) of each matmul of the merger/projector, per LLM token; mergers: how many such mergers
    run (Qwen3-VL: the final one plus one per deepstack layer).
    """

    depth: int
    hidden: int
    mlp: int
    mlp_mats: int
    patch_in: int
    merge: int
    merger: tuple[tuple[int, int], ...]
    mergers: int = 1
    window: int = 0
    window_layers: int = 0
    cls: int = 0


@dataclass(frozen=True)
class LLMSpec:
    """The widths of a decoder-only LLM with grouped-query attention and a gated MLP."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp: int
    vocab: int


def side(x) -> int:
    """A config size that may be given as (h, w) or as one number."""
    return int(x[0] if isinstance(x, (list, tuple)) else x)


def tower_spec(config) -> TowerSpec:
    """The vision tower's widths, read from a full model config by its family's adapter (the one place that
    knows a family's tower)."""
    from codecsight.models.base import family_of

    return family_of(config).tower_spec(config)


def llm_spec(config) -> LLMSpec:
    """Read the LLM's widths from a full model config."""
    t = config.text_config
    if getattr(t, "num_experts", None) or getattr(t, "use_sliding_window", False):
        raise ConfigError(f"FLOP counting: {t.model_type} with experts or sliding-window attention is not modelled")
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    return LLMSpec(t.num_hidden_layers, t.hidden_size, t.num_attention_heads,
                   t.num_key_value_heads or t.num_attention_heads, head_dim, t.intermediate_size, t.vocab_size)


# ---- what ran ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisionWork:
    """What one vision call executed, independent of widths.

    patches: patches through the patch embedding; tokens: tokens through every layer (patches + CLS);
    pairs_full / pairs_window: query-key pairs attended in a full-attention / windowed layer;
    merged: LLM tokens out of the merger.
    """

    patches: int = 0
    tokens: int = 0
    pairs_full: int = 0
    pairs_window: int = 0
    merged: int = 0


@dataclass(frozen=True)
class PrefillWork:
    """What one LLM prefill executed: tokens computed through every layer, query-key pairs they attended, and
    positions whose LM-head logits were computed."""

    tokens: int = 0
    pairs: int = 0
    logits: int = 0


def _window_counts(mask: np.ndarray, side: int) -> np.ndarray:
    """Tokens of `mask` in each side x side window of the token grid (edge windows are partial)."""
    rows, cols = mask.shape
    padded = np.zeros((-(-rows // side) * side, -(-cols // side) * side), np.int64)
    padded[:rows, :cols] = mask
    return padded.reshape(padded.shape[0] // side, side, padded.shape[1] // side, side).sum(axis=(1, 3))


def vision_work(config, keep: Iterable[np.ndarray], context: bool = False) -> VisionWork:
    """Work of encoding temporal patches (Qwen: one per 2 frames; InternVL: one per frame) given, for each, a bool
    (rows, cols) mask over its LLM-token grid of the tokens run (all True = full encoding). A temporal patch with no
    token kept does not run at all; one that runs carries InternViT's CLS token along.

    isolated (context=False): kept tokens attend only to each other (within their window in windowed layers).
    context: they attend to the keys of every token of their temporal patch (window), the unchanged ones' from a
    per-layer cache; their own projections and MLP still run on the kept tokens only.
    """
    spec = tower_spec(config)
    unit = spec.merge**2
    patches = tokens = pairs_full = pairs_window = merged = 0
    for mask in keep:
        mask = np.asarray(mask, bool)
        kept = int(mask.sum())
        if kept == 0:
            continue
        queries = kept * unit + spec.cls
        keys = mask.size * unit + spec.cls if context else queries
        patches += kept * unit
        tokens += queries
        pairs_full += queries * keys
        merged += kept
        if spec.window:
            kept_w = _window_counts(mask, spec.window) * unit
            keys_w = _window_counts(np.ones_like(mask), spec.window) * unit if context else kept_w
            pairs_window += int((kept_w * keys_w).sum())
    return VisionWork(patches, tokens, pairs_full, pairs_window, merged)


def prefill_work(slots: Sequence[int] | np.ndarray, logits: int = 1, dense_keys: int | None = None) -> PrefillWork:
    """Work of computing the tokens at the given cache slots (0-based order in the window, e.g. range(n, n + k)
    for k new tokens after n cached ones, or the scattered slots of a partial recompute). Each token attends
    causally to the keys at slots up to its own; with dense_keys, to that many keys (a dense masked kernel)."""
    slots = np.asarray(slots, np.int64)
    if slots.size and (slots.min() < 0 or (dense_keys is not None and slots.max() >= dense_keys)):
        raise ConfigError(f"cache slots must lie in [0, {dense_keys or 'inf'}), got {slots.min()}..{slots.max()}")
    pairs = len(slots) * dense_keys if dense_keys is not None else int((slots + 1).sum())
    return PrefillWork(len(slots), pairs, logits)


# ---- FLOPs ---------------------------------------------------------------------------------------------------


def count_flops(config, vision: VisionWork | None = None, prefill: PrefillWork | None = None) -> FlopCount:
    """Executed FLOPs of the given vision and prefill work on the model described by `config`."""
    vit = merger = llm = 0
    if vision is not None:
        s = tower_spec(config)
        d = s.hidden
        per_token = 4 * d * d + s.mlp_mats * d * s.mlp  # qkv (3 d^2) + output projection (d^2) + MLP
        attention = 4 * d * ((s.depth - s.window_layers) * vision.pairs_full + s.window_layers * vision.pairs_window)
        vit = 2 * vision.patches * s.patch_in * d + 2 * s.depth * vision.tokens * per_token + attention
        merger = 2 * vision.merged * s.mergers * sum(i * o for i, o in s.merger)
    if prefill is not None:
        t = llm_spec(config)
        q, kv = t.heads * t.head_dim, t.kv_heads * t.head_dim
        per_token = t.hidden * (2 * q + 2 * kv) + 3 * t.hidden * t.mlp  # q, o; k, v; gate, up, down
        llm = (2 * t.layers * prefill.tokens * per_token + 4 * t.layers * q * prefill.pairs
               + 2 * prefill.logits * t.hidden * t.vocab)
    return FlopCount(vit, merger, llm)


# ---- check against torch's FlopCounterMode --------------------------------------------------------------------


def flop_counter():
    """torch's FlopCounterMode, also counting the CPU SDPA kernel."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    # CPU SDPA runs as its own aten op, unknown to FlopCounterMode: count it like the other SDPA kernels (dense).
    def cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa})


# Module names as FlopCounterMode tracks them: "...visual.merger", "...deepstack_merger_list.0", and a projector
# called outside the tower at top level under its class name ("InternVLMultiModalProjector").
_MERGER_MODULE = re.compile(r"(merger|deepstack_merger_list\.\d+|projector)$", re.IGNORECASE)


def measured_vision(counter) -> FlopCount:
    """A vision call's counted FLOPs, split into the tower and its merger(s)/projector by module name."""
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    merger = sum(v for name, v in counts.items() if _MERGER_MODULE.search(name))
    return FlopCount(vit=counter.get_total_flops() - merger, merger=merger)


def _kept_rows(keep: list[np.ndarray], unit: int) -> np.ndarray:
    """Rows of a packed Qwen patch tensor (temporal patches one after another, each in merge-block order, `unit`
    consecutive patches per LLM token) that belong to kept tokens."""
    tokens = np.flatnonzero(np.concatenate([m.ravel() for m in keep]))
    return (tokens[:, None] * unit + np.arange(unit)).ravel()


def _qwen_vision(model, keep: list[np.ndarray], subset: bool, rng) -> FlopCount:
    """Run the library's Qwen vision tower on whole temporal patches, or on the kept tokens only through its
    precomputed-kwargs path (positions, packed sequences, windows), and measure it."""
    import torch
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights, get_vision_position_ids

    tower = model.model.visual
    merge = tower.spatial_merge_size
    rows, cols = keep[0].shape
    grid_thw = torch.tensor([[len(keep), rows * merge, cols * merge]])
    spec = tower_spec(model.config)
    pixels = torch.from_numpy(rng.standard_normal((int(grid_thw.prod()), spec.patch_in), np.float32))
    kwargs = {}
    if subset:
        sel = torch.from_numpy(_kept_rows(keep, merge**2))
        kept = np.array([int(m.sum()) for m in keep if m.any()])
        pixels = pixels[sel]
        kwargs["position_ids"] = get_vision_position_ids(grid_thw, merge)[sel]
        kwargs["cu_seqlens"] = torch.tensor(np.concatenate([[0], np.cumsum(kept * merge**2)]), dtype=torch.int32)
        if spec.window:  # kept tokens grouped by (temporal patch, window), raster order inside a window
            r, c = np.divmod(np.arange(rows * cols), cols)
            window = (r // spec.window) * -(-cols // spec.window) + c // spec.window
            t_win = np.concatenate([t * rows * cols + window[m.ravel()] for t, m in enumerate(keep)])
            order = np.argsort(t_win, kind="stable")
            sizes = np.unique(t_win, return_counts=True)[1] * merge**2
            kwargs["window_index"] = torch.from_numpy(order)
            kwargs["cu_window_seqlens"] = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.int32)
        if hasattr(tower, "pos_embed"):  # Qwen3-VL's learned position grid, resampled per patch
            idx, w = get_vision_interpolation_indices_and_weights(
                grid_thw, num_grid_per_side=tower.num_grid_per_side, mode=tower.interpolation_mode,
                align_corners=tower.interpolation_align_corners, spatial_merge_size=merge)
            kwargs["interp_indices"], kwargs["interp_weights"] = idx[sel], w[sel]
    with torch.no_grad(), flop_counter() as counter:
        tower(pixels, grid_thw=grid_thw, **kwargs)
    return measured_vision(counter)


def _internvl_vision(model, keep: list[np.ndarray], subset: bool, rng) -> FlopCount:
    """Run the library's InternVL image path on whole frames, or InternViT's layers on CLS + the kept tokens'
    patches followed by the projector, and measure it."""
    import torch

    tower, projector = model.model.vision_tower, model.model.multi_modal_projector
    patch, merge = tower.embeddings.patch_size[0], round(1 / model.config.downsample_ratio)
    rows, cols = keep[0].shape
    pixels = torch.from_numpy(rng.standard_normal((len(keep), 3, rows * merge * patch, cols * merge * patch),
                                                  np.float32))
    if not subset:
        with torch.no_grad(), flop_counter() as counter:
            model.model.get_image_features(pixel_values=pixels)
        return measured_vision(counter)
    measured = FlopCount()
    for frame, mask in zip(pixels, keep):
        if not mask.any():
            continue
        # (rows, cols) tokens of merge x merge patches each -> the kept tokens' patches, token by token
        p = frame.reshape(3, rows, merge, patch, cols, merge, patch).permute(1, 4, 2, 5, 0, 3, 6)
        p = p[torch.from_numpy(mask)].reshape(-1, 3, patch, patch)
        with torch.no_grad(), flop_counter() as vit:
            h = tower.embeddings.patch_embeddings.projection(p).flatten(1)
            h = torch.cat([tower.embeddings.cls_token[0], h])[None]
            for layer in tower.encoder.layer:
                h = layer(h)
        with torch.no_grad(), flop_counter() as proj:
            projector(h[:, 1:].reshape(1, int(mask.sum()), -1))
        measured += FlopCount(vit=vit.get_total_flops(), merger=proj.get_total_flops())
    return measured


def _prefill(model, new: int, cached: int, rng) -> FlopCount:
    """Run the library's text prefill of `new` tokens after a DynamicCache of `cached` tokens, and measure it."""
    import torch

    ids = torch.from_numpy(rng.integers(0, 1000, (1, cached + new)))
    past = None
    with torch.no_grad():
        if cached:
            past = model(input_ids=ids[:, :cached], use_cache=True).past_key_values
        with flop_counter() as counter:
            model(input_ids=ids[:, cached:], past_key_values=past, use_cache=past is not None, logits_to_keep=1)
    return FlopCount(llm=counter.get_total_flops())


def _rel_error(counted: FlopCount, measured: FlopCount) -> float:
    pairs = [(counted.vit, measured.vit), (counted.merger, measured.merger), (counted.llm, measured.llm)]
    return max(abs(c - m) / m if m else float(c != 0) for c, m in pairs)


def flop_counter_errors(model, grid: tuple[int, int] = (5, 7), temporal_patches: int = 3, tokens: int = 96,
                        seed: int = 0) -> dict[str, float]:
    """Relative error of `count_flops` against FlopCounterMode on the library's own forward of `model` (any
    supported family), worst over the vit / merger / llm parts, for: the full vision tower; the tower on a random
    subset of tokens; a prefill of `tokens` tokens; and `tokens // 2` new tokens after a cache of as many. The
    dense kernels here multiply every query by every key in the cache, so the prefills are counted with
    `dense_keys`."""
    rng = np.random.default_rng(seed)
    config = model.config
    run = _qwen_vision
    if config.model_type == "internvl":  # InternVL's image path takes square tiles of the configured size
        v = config.vision_config
        run, grid = _internvl_vision, (side(v.image_size) // (side(v.patch_size) * tower_spec(config).merge),) * 2
    full = [np.ones(grid, bool)] * temporal_patches
    subset = [rng.random(grid) < 0.4 for _ in range(temporal_patches)]
    subset[0].flat[0] = True  # at least one token runs
    half = tokens // 2
    return {
        "vision_full": _rel_error(count_flops(config, vision_work(config, full)), run(model, full, False, rng)),
        "vision_subset": _rel_error(count_flops(config, vision_work(config, subset)), run(model, subset, True, rng)),
        "prefill": _rel_error(count_flops(config, prefill=prefill_work(range(tokens), dense_keys=tokens)),
                              _prefill(model, tokens, 0, rng)),
        "prefill_cached": _rel_error(
            count_flops(config, prefill=prefill_work(range(half, tokens), dense_keys=tokens)),
            _prefill(model, tokens - half, half, rng)),
    }


def flop_counter_max_rel_error(models: Iterable) -> float:
    """Worst relative error of `count_flops` against FlopCounterMode over the given models and all checks."""
    return max(max(flop_counter_errors(m).values()) for m in models)
