"""Sliding-window LLM prefill with selective KV refresh, and standing questions on a shared window.

Each window is laid out (window.py), its positions planned (positions.py), and its KV computed in one of two ways:
- full: every token through every layer;
- reuse: tokens already in the previous window (same identity) take their cached KV, keys re-rotated from their
  old to their new positions with the model's own rotary embedding (values as they are); new tokens and the tokens
  a refresh policy picks are recomputed, attending to the reused KV through a 4-D additive mask.
The layers run as stock transformers decoder layers over a DynamicCache holding the other tokens' KV; a short own
loop over them lets the computed set change between layers (CacheBlend's check) and adds Qwen3-VL's deepstack
features to the visual tokens that are computed.

Refresh policies, each with a budget (fraction of the reused tokens that may be recomputed):
none, anchors (key-frame segments first), codec (tokens the codec flags as changed, then anchors), deviation
(CacheBlend: the first `check_layer` layers run for all tokens, then the reused tokens whose values at that layer
deviate most from the cached ones are recomputed), vlcache (VLCache: the first `budget` of the tokens of every
reused segment), random (control); full recomputes everything. The exact prefix
(system prompt: same tokens at the same positions) is always reused: its KV is what a full prefill computes.
A full prefill every `full_every` windows bounds the drift that reuse accumulates.
Many streams: a window's prefill is a generator of stages (`WindowPrefill.steps`); `prefill_many` runs the stages
of several windows as one padded batch, and `ask_many` answers their questions as one; both equal one window alone.
Token bookkeeping (slots, positions, masks) lives on the CPU; KV and hidden states stay on the model's device.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from codecsight.errors import ConfigError
from codecsight.flops import count_flops, llm_spec, prefill_work
from codecsight.prefill.window import Layout, Window, build_layout

POLICIES = ("full", "none", "anchors", "codec", "deviation", "random", "vlcache")
DEFAULT_POLICY, DEFAULT_BUDGET = "codec", 0.1  # what the runtime uses; measured in `codecsight bench prefill`


@dataclass
class WindowKV:
    """The KV of a prefilled window (no question): per layer (1, kv_heads, L, head_dim), keys rotated to
    `positions` (3, L); the identity of each token; the cursor where a question starts; and how many windows ago
    the last full prefill was."""

    keys: list[Hashable]
    positions: torch.Tensor
    k: list[torch.Tensor]
    v: list[torch.Tensor]
    cursor: int
    age: int = 0

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class PrefillStats:
    """What one window prefill computed. tokens: window length; new: tokens not in the previous window;
    exact: the exact prefix reused as is; refreshed: other reused tokens recomputed; token_layers: token x layer
    passes run (a full prefill runs tokens x layers); flops: LLM FLOPs executed (codecsight.flops, causal pairs);
    full_flops: a full prefill's."""

    policy: str
    tokens: int
    new: int
    exact: int
    refreshed: int
    token_layers: int
    flops: int
    full_flops: int

    @property
    def recomputed_fraction(self) -> float:
        return (self.new + self.refreshed) / self.tokens


@dataclass
class Answer:
    """A standing question's answer: greedy text (bounded length), its token ids, P("Yes") from the first answer
    token's logits over the "Yes"/"No" ids, and those first-token logits (only the "Yes"/"No" pair when no text
    was asked for)."""

    text: str
    ids: list[int]
    p_yes: float
    logits: torch.Tensor


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rerotate(adapter, keys: list[torch.Tensor], delta: torch.Tensor) -> list[torch.Tensor]:
    """Move keys (1, heads, n, head_dim), one tensor per layer, by position deltas (3, n): a rotation by the
    angles of the delta, which composes with the one already applied (exact when `adapter.rerotation_refusal()`
    is None). The angles are the same in every layer: computed once."""
    cos, sin = adapter.rotary(keys[0], delta.to(keys[0].device))
    cos, sin = cos[:, None], sin[:, None]
    return [k * cos + rotate_half(k) * sin for k in keys]


def causal_mask(q_seq: torch.Tensor, k_seq: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """4-D additive mask: query at sequence slot q sees keys at slots <= q, whatever order they sit in."""
    allowed = k_seq[None, :] <= q_seq[:, None]
    return torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)[None, None]


def run_layers(adapter, h, pos_emb, mask, cache, layers, deepstack=None):
    """Run hidden states h (B, n, hidden) with rotary cos/sin `pos_emb` (B, n, head_dim each) through `layers`;
    each layer appends its KV of these tokens to `cache`. deepstack: (rows of h flattened to (B * n) that are
    visual, per-layer features for those rows)."""
    blocks = adapter.language_model().layers
    mask = mask.to(h.device) if mask is not None else None
    rows, feats = (deepstack[0].to(h.device), deepstack[1]) if deepstack is not None else (None, [])
    for i in layers:
        h = blocks[i](h, attention_mask=mask, position_embeddings=pos_emb, past_key_values=cache)
        if i < len(feats):
            h = h.flatten(0, 1).index_add(0, rows, feats[i].to(h.dtype)).view(h.shape)
    return h


@dataclass
class Stage:
    """Tokens of one window to run through some layers: the `active` slots are computed, the other slots' KV is
    read from K, V (per layer (1, kv_heads, L, head_dim)), and the computed KV is written back into them. h: the
    active tokens' hidden states (1, n_active, hidden) when they continue from earlier layers."""

    lay: Layout
    active: torch.Tensor
    K: list[torch.Tensor]
    V: list[torch.Tensor]
    h: torch.Tensor | None = None


def run_stages(adapter, stages: list[Stage], layers: range) -> list[torch.Tensor]:
    """Run the stages of several windows (of one stream or many) as one batch through `layers`: each is a row,
    padded to the longest; a query sees keys of its own row only, at sequence slots up to its own. Returns each
    stage's hidden states (1, n_active, hidden)."""
    n_layers = len(adapter.language_model().layers)
    qs = [s.active.nonzero().flatten() for s in stages]
    ps = [(~s.active).nonzero().flatten() for s in stages]
    nq, npast = max(map(len, qs)), max(map(len, ps))
    like = stages[0].lay.embeds
    # slots index KV and hidden states on the model's device: moved there once per stage, not once per layer
    qd, pd = [q.to(like.device) for q in qs], [p.to(like.device) for p in ps]
    h = like.new_zeros(len(stages), nq, like.shape[-1])
    mask = torch.full((len(stages), 1, nq, npast + nq), torch.finfo(like.dtype).min, dtype=like.dtype)
    rows, feats = [], []
    for j, (s, q, p) in enumerate(zip(stages, qs, ps)):
        h[j, :len(q)] = s.h[0] if s.h is not None else s.lay.embeds[qd[j]]
        mask[j, 0, :len(q), :len(p)] = causal_mask(q, p, like.dtype)[0, 0]
        mask[j, 0, :len(q), npast:npast + len(q)] = causal_mask(q, q, like.dtype)[0, 0]
        pad = torch.arange(len(q), nq)
        mask[j, 0, pad, npast + pad] = 0.0  # padding rows see themselves only (no row may see nothing)
        if s.lay.deepstack is not None:
            visual_index = s.lay.visual.long().cumsum(0) - 1
            r = s.lay.visual[q].nonzero().flatten()
            rows.append(r + j * nq)
            at = visual_index[q[r]].to(like.device)
            feats.append([d[at] for d in s.lay.deepstack])
    deepstack = (torch.cat(rows), [torch.cat(f) for f in zip(*feats)]) if rows else None

    cache = DynamicCache(ddp_cache_data=[
        (_rows([s.K[i][:, :, p] for s, p in zip(stages, pd)], npast),
         _rows([s.V[i][:, :, p] for s, p in zip(stages, pd)], npast)) if i in layers and npast else (None, None)
        for i in range(n_layers)])
    pos_emb = batch_rotary(adapter, h, [s.lay.positions[:, q] for s, q in zip(stages, qs)])
    h = run_layers(adapter, h, pos_emb, mask, cache, layers, deepstack)
    for j, (s, q) in enumerate(zip(stages, qd)):
        for i in layers:
            s.K[i][:, :, q] = cache.layers[i].keys[j:j + 1, :, npast:npast + len(q)]
            s.V[i][:, :, q] = cache.layers[i].values[j:j + 1, :, npast:npast + len(q)]
    return [h[j:j + 1, :len(q)] for j, q in enumerate(qs)]


def batch_rotary(adapter, h, positions: list[torch.Tensor]):
    """Rotary cos, sin (B, n, head_dim) for rows of h (B, n, hidden) at positions (3, n_j) each, n_j <= n; padding
    rows get the identity rotation."""
    cos, sin = [], []
    for j, p in enumerate(positions):
        c, s = adapter.rotary(h[j:j + 1, :p.shape[1]], p.to(h.device))
        cos.append(F.pad(c, (0, 0, 0, h.shape[1] - p.shape[1]), value=1.0))
        sin.append(F.pad(s, (0, 0, 0, h.shape[1] - p.shape[1])))
    return torch.cat(cos), torch.cat(sin)


def _rows(kv: list[torch.Tensor], n: int) -> torch.Tensor:
    """(1, heads, n_j, head_dim) KV of several windows as rows of one batch, padded to n (no copy for one)."""
    if len(kv) == 1 and kv[0].shape[2] == n:
        return kv[0]
    return torch.cat([F.pad(x, (0, 0, 0, n - x.shape[2])) for x in kv])


@torch.inference_mode()
def prefill_many(jobs: list[tuple["WindowPrefill", Window]]) -> list[tuple[WindowKV, PrefillStats]]:
    """Prefill windows of several streams (one WindowPrefill each, one model) together: every stage they need is
    run in one batch with the stages of the others that cover the same layers. Equal to prefilling each alone."""
    steps = [p.steps(w) for p, w in jobs]
    pending, results = {}, {}

    def advance(i, h=None):
        try:
            pending[i] = steps[i].send(h)
        except StopIteration as done:
            pending.pop(i, None)
            results[i] = done.value

    for i in range(len(jobs)):
        advance(i)
    while pending:
        layers = next(iter(pending.values()))[1]
        batch = [i for i, (_, r) in pending.items() if r == layers]
        adapter = jobs[batch[0]][0].adapter
        for i, h in zip(batch, run_stages(adapter, [pending[i][0] for i in batch], layers)):
            advance(i, h)
    return [results[i] for i in range(len(jobs))]


class WindowPrefill:
    """Prefills a stream's windows one after another, reusing KV across them, and answers standing questions.

    system_ids: token ids of the text before the first frame (e.g. adapter.chat_system(...)).
    yes_no: the "Yes"/"No" token ids for P(Yes) (default: from the adapter's tokenizer).
    """

    def __init__(self, adapter, system_ids: list[int], policy: str = DEFAULT_POLICY, budget: float = DEFAULT_BUDGET,
                 full_every: int = 8, check_layer: int = 1, seed: int = 0,
                 yes_no: tuple[int, int] | None = None):
        n_layers = len(adapter.language_model().layers)
        if policy not in POLICIES:
            raise ConfigError(f"refresh policy {policy!r} is not one of {', '.join(POLICIES)}")
        if not 0.0 <= budget <= 1.0:
            raise ConfigError(f"refresh budget must be in [0, 1], got {budget}")
        if full_every < 1:
            raise ConfigError(f"full_every must be >= 1, got {full_every}")
        if policy == "deviation" and not 1 <= check_layer < n_layers:
            raise ConfigError(f"check_layer must be in [1, {n_layers - 1}], got {check_layer}")
        self.adapter, self.system_ids = adapter, list(system_ids)
        self.policy, self.budget, self.full_every, self.check_layer = policy, budget, full_every, check_layer
        self.n_layers = n_layers
        self.yes_no = yes_no
        self.rng = torch.Generator().manual_seed(seed)
        self.kv: WindowKV | None = None
        self.refusal = adapter.rerotation_refusal() if policy != "full" else None
        if self.refusal:
            warnings.warn(f"KV reuse refused for {adapter.family}: {self.refusal}; re-rotated keys would not equal "
                          f"fresh ones, so every window is prefilled in full", stacklevel=2)

    # ---- one window ---------------------------------------------------------------------------------------

    def prefill(self, window: Window) -> tuple[WindowKV, PrefillStats]:
        """KV of the window [system][segments], reusing the previous window's where the policy allows."""
        return prefill_many([(self, window)])[0]

    def steps(self, window: Window):
        """The prefill of one window as a generator: it yields (Stage, layers) to be run (by `prefill_many`, with
        other streams' stages), is sent back the stage's hidden states, and returns (WindowKV, PrefillStats)."""
        lay = build_layout(self.adapter, window, self.system_ids)
        prev = self.kv
        if prev is None or self.refusal or self.policy == "full" or prev.age + 1 >= self.full_every:
            kv, stats = yield from self._full(lay)
        else:
            kv, stats = yield from self._reuse(lay, prev)
        self.kv = kv
        return kv, stats

    def _empty(self, lay: Layout) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        cfg = self.adapter.config.get_text_config()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        shape = (1, cfg.num_key_value_heads, len(lay), head_dim)
        like = dict(dtype=lay.embeds.dtype, device=lay.embeds.device)
        return ([torch.empty(shape, **like) for _ in range(self.n_layers)],
                [torch.empty(shape, **like) for _ in range(self.n_layers)])

    def _flops(self, lay: Layout, active: torch.Tensor, layers: int) -> int:
        slots = active.nonzero().flatten().numpy()
        return count_flops(self.adapter.config, prefill=prefill_work(slots, logits=0)).llm * layers // self.n_layers

    def _full(self, lay: Layout) -> tuple[WindowKV, PrefillStats]:
        K, V = self._empty(lay)
        everything = torch.ones(len(lay), dtype=torch.bool)
        yield Stage(lay, everything, K, V), range(self.n_layers)
        flops = self._flops(lay, everything, self.n_layers)
        stats = PrefillStats("full", len(lay), len(lay), 0, 0, len(lay) * self.n_layers, flops, flops)
        return WindowKV(lay.keys, lay.positions, K, V, lay.cursor, age=0), stats

    def _reuse(self, lay: Layout, prev: WindowKV) -> tuple[WindowKV, PrefillStats]:
        L, N = len(lay), self.n_layers
        index = {key: i for i, key in enumerate(prev.keys)}
        old = torch.tensor([index.get(key, -1) for key in lay.keys])
        reused = old >= 0
        src = old[reused]
        # the exact prefix: the same tokens at the same slots and positions from the start
        same = reused & (old == torch.arange(L)) & (prev.positions[:, old.clamp(min=0)] == lay.positions).all(0)
        prefix = int(same.long().cumprod(0).sum())
        candidates = reused.clone()
        candidates[:prefix] = False
        k = round(self.budget * int(candidates.sum()))

        K, V = self._empty(lay)
        delta = lay.positions[:, reused] - prev.positions[:, src]
        at, src_at = reused.nonzero().flatten().to(K[0].device), src.to(K[0].device)  # once, not per layer
        moved = rerotate(self.adapter, [k[:, :, src_at] for k in prev.k], delta)
        for i in range(N):
            K[i][:, :, at] = moved[i]
            V[i][:, :, at] = prev.v[i][:, :, src_at]

        full_flops = count_flops(self.adapter.config, prefill=prefill_work(range(L), logits=0)).llm
        if self.policy == "deviation":
            c = self.check_layer
            first = torch.arange(L) >= prefix  # every token after the exact prefix runs the first c layers
            h = yield Stage(lay, first, K, V), range(c)
            slots = first.nonzero().flatten()  # the sequence slot of each row of h
            rows = candidates[slots].nonzero().flatten()
            deviation = (self.adapter.values(c, h[:, rows]) - V[c][:, :, slots[rows]]).square().sum(dim=(0, 1, 3))
            refresh = torch.zeros(L, dtype=torch.bool)
            refresh[slots[rows[deviation.topk(k).indices.cpu()]]] = True
            active = ~reused | refresh
            yield Stage(lay, active, K, V, h[:, active[first]]), range(c, N)
            spec = llm_spec(self.adapter.config)
            check = 2 * spec.hidden * spec.kv_heads * spec.head_dim * len(rows)  # the value projections compared
            flops = self._flops(lay, first, c) + self._flops(lay, active, N - c) + check
            token_layers = int(first.sum()) * c + int(active.sum()) * (N - c)
        else:
            refresh = self._choose(lay, candidates, k)
            active = ~reused | refresh
            if active.any():
                yield Stage(lay, active, K, V), range(N)
            flops = self._flops(lay, active, N)
            token_layers = int(active.sum()) * N
        stats = PrefillStats(self.policy, L, int((~reused).sum()), prefix, int(refresh.sum()), token_layers,
                             flops, full_flops)
        return WindowKV(lay.keys, lay.positions, K, V, lay.cursor, age=prev.age + 1), stats

    def _choose(self, lay: Layout, candidates: torch.Tensor, k: int) -> torch.Tensor:
        """The reused tokens to recompute under a policy that needs no model run."""
        idx = candidates.nonzero().flatten()
        if self.policy == "random":
            pick = idx[torch.randperm(len(idx), generator=self.rng)[:k]]
        elif self.policy == "vlcache":  # VLCache: the first `budget` of every reused segment, in sequence order
            idx = idx[lay.visual[idx]]
            owner = [lay.keys[i][0] for i in idx.tolist()]
            size = Counter(owner)
            taken: Counter = Counter()
            keep = []
            for j, o in enumerate(owner):
                taken[o] += 1
                keep.append(taken[o] <= math.ceil(self.budget * size[o]))
            pick = idx[torch.tensor(keep, dtype=torch.bool)] if keep else idx
        elif self.policy in ("anchors", "codec"):
            score = lay.anchor[idx].long()
            if self.policy == "codec":
                score = score + 2 * lay.changed[idx].long()
            order = torch.sort(score, descending=True, stable=True).indices[:k]  # earliest first among equals
            pick = idx[order[score[order] > 0]]
        else:  # none
            pick = idx[:0]
        refresh = torch.zeros(len(lay), dtype=torch.bool)
        refresh[pick] = True
        return refresh

    # ---- standing questions -------------------------------------------------------------------------------

    def ask(self, kv: WindowKV, questions: list[list[int]], max_new_tokens: int = 8) -> list[Answer]:
        """Answer standing questions on one window's KV (see `ask_many`)."""
        return ask_many([(self, kv, questions)], max_new_tokens)[0]


class _Asked:
    """One window's questions laid out after its KV: each key's owner (-1: the window and the prefix its questions
    share, j: question j, -2: padding no query sees) and order (position past the window's cursor; -1: the
    window); the queries' own owner and order; where each question ends."""

    def __init__(self, kv: WindowKV, questions: list[list[int]]):
        if not questions or not all(questions):
            raise ConfigError("ask() needs at least one question, and no empty one")
        self.kv, self.n = kv, len(questions)
        shared = 0  # common prefix, leaving each question at least its last token (its logits answer it)
        while shared < min(map(len, questions)) - 1 and len({q[shared] for q in questions}) == 1:
            shared += 1
        self.lengths = torch.tensor([len(q) for q in questions])
        self.owner = torch.cat([torch.full((len(kv) + shared,), -1),
                                torch.repeat_interleave(torch.arange(self.n), self.lengths - shared)])
        self.order = torch.cat([torch.full((len(kv),), -1), torch.arange(shared),
                                *[torch.arange(shared, n) for n in self.lengths.tolist()]])
        self.text = questions[0][:shared] + [t for q in questions for t in q[shared:]]
        self.ends = shared + (self.lengths - shared).cumsum(0) - 1


def _pad(x: torch.Tensor, n: int, value: int) -> torch.Tensor:
    return F.pad(x, (0, n - len(x)), value=value)


@torch.inference_mode()
def ask_many(jobs: list[tuple[WindowPrefill, WindowKV, list[list[int]]]], max_new_tokens: int = 8) \
        -> list[list[Answer]]:
    """Answer the standing questions of several windows (one model and one pair of yes/no ids) in one batch, a row
    per window. Within a row the questions run side by side after the window, each seeing the window
    and its own tokens only (a fork of the cache per question): the frames are prefilled once, each question adds
    only its own tokens and answer, and a prefix common to a window's questions (a shared template such as
    "Describe the frames and determine if they show") is computed once. Rows are padded to the longest; a padded query sees its row's window only and
    no query sees padding, so each row equals the window asked alone."""
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0 (0: P(Yes) only, no text), got {max_new_tokens}")
    if not jobs:
        return []
    prefill = jobs[0][0]
    if any(p.adapter is not prefill.adapter or p.yes_no != prefill.yes_no for p, _, _ in jobs):
        raise ConfigError("ask_many: every job must use the same model and yes/no ids (one batch, one model)")
    rows = [_Asked(kv, qs) for _, kv, qs in jobs]
    adapter, layers = prefill.adapter, range(prefill.n_layers)
    yes, no = prefill.yes_no if prefill.yes_no is not None else adapter.yes_no_ids()
    stop = adapter.stop_ids()
    n_kv = max(len(r.kv) for r in rows)
    width = max(len(r.text) for r in rows)
    # keys: [window KV, padded][text, padded]([one token per question, padded] per step)
    owner = torch.stack([torch.cat([_pad(r.owner[:len(r.kv)], n_kv, -2), _pad(r.owner[len(r.kv):], width, -2)])
                         for r in rows])
    order = torch.stack([torch.cat([_pad(r.order[:len(r.kv)], n_kv, -1), _pad(r.order[len(r.kv):], width, -1)])
                         for r in rows])
    q_owner = torch.where(owner[:, n_kv:] == -2, -1, owner[:, n_kv:])  # padded queries: the window's owner
    q_order = order[:, n_kv:]
    cache = DynamicCache(ddp_cache_data=[  # the layers append to copies: each kv stays as is
        (_rows([r.kv.k[i] for r in rows], n_kv), _rows([r.kv.v[i] for r in rows], n_kv)) for i in layers])
    h = adapter.embed_text([t for r in rows for t in r.text + r.text[-1:] * (width - len(r.text))])
    h = h.view(len(rows), width, -1)
    row = torch.cat([torch.full((r.n,), b) for b, r in enumerate(rows)])  # (row, index in h) of each question
    ends = torch.cat([r.ends for r in rows])
    ids, done = [[] for _ in row], [False] * len(row)
    for step in range(max(1, max_new_tokens)):
        seen = ((owner[:, None] == -1) | (owner[:, None] == q_owner[:, :, None])) & \
               (order[:, None] <= q_order[:, :, None])
        mask = torch.where(seen, 0.0, torch.finfo(h.dtype).min).to(h.dtype)[:, None]
        pos_emb = batch_rotary(adapter, h, [(r.kv.cursor + q_order[b].clamp(min=0)).expand(3, -1)
                                            for b, r in enumerate(rows)])
        h = run_layers(adapter, h, pos_emb, mask, cache, layers)
        if max_new_tokens == 0:  # P(Yes) only: two rows of the vocabulary table instead of all of them
            first = adapter.logits(h[row, ends], rows=[yes, no]).float()
            answers = [Answer("", [], float(torch.softmax(f, dim=0)[0]), f) for f in first]
            break
        logits = adapter.logits(h[row, ends]).float()
        if step == 0:
            first = logits
        for j, token in enumerate(logits.argmax(-1).tolist()):
            if not done[j]:
                ids[j].append(token)
                done[j] = token in stop
        if step == max_new_tokens - 1 or all(done):
            answers = [Answer(adapter.decode([t for t in a if t not in stop]), a,
                              float(torch.softmax(f[[yes, no]], dim=0)[0]), f) for a, f in zip(ids, first)]
            break
        # the next step: each question's newest token (finished ones run along, their output unused)
        most = max(r.n for r in rows)
        q_owner = torch.stack([_pad(torch.arange(r.n), most, -1) for r in rows])
        q_order = torch.stack([_pad(r.lengths + step, most, -1) for r in rows])
        owner = torch.cat([owner, torch.where(q_order < 0, -2, q_owner)], dim=1)
        order = torch.cat([order, q_order], dim=1)
        newest = iter(a[-1] for a in ids)
        h = adapter.embed_text([next(newest) if j < r.n else r.text[-1] for r in rows for j in range(most)])
        h = h.view(len(rows), most, -1)
        ends = torch.cat([torch.arange(r.n) for r in rows])
    answered = iter(answers)
    return [[next(answered) for _ in range(r.n)] for r in rows]
