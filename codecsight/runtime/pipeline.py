"""One stream under one method: sampled frames -> token plan -> (batched) pruned ViT -> window prefill -> answers.

The pipeline never calls the ViT itself: `push` returns an encode request when a temporal patch is complete, the
engine packs the requests of every stream into one ViT call, and hands each result back to `encoded`, which
builds the segment and answers every window that became due.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from codecsight.flops import count_flops, prefill_work, vision_work
from codecsight.plan import TokenPlanner
from codecsight.prefill.engine import Answer, PrefillStats, WindowPrefill
from codecsight.prefill.window import Segment, Window
from codecsight.runtime.methods import Method
from codecsight.signals import ChangeMap, SampledFrame
from codecsight.signals.changemap import luma, token_mean_abs_diff
from codecsight.vision.encoder import EncodedPatch, EncodeRequest

SYSTEM_PROMPT = "You watch a camera stream and answer questions about the frames."


@dataclass(frozen=True)
class Question:
    """A standing question. window and stride in sampled frames (whole temporal patches)."""

    text: str
    window: int = 16
    stride: int = 4
    threshold: float = 0.5


@dataclass
class Event:
    """The answer to one standing question on one window."""

    stream: str
    method: str
    window: int
    start: float
    end: float
    question: str
    answer: str
    p_yes: float
    yes: bool


@dataclass
class Counters:
    """What a pipeline did, for the summary and the benchmarks. *_full: what full compute would have done."""

    samples: int = 0
    patches: int = 0
    tokens: int = 0
    tokens_encoded: int = 0
    tokens_llm: int = 0  # visual tokens handed to the LLM
    vit_flops: int = 0
    vit_flops_full: int = 0
    llm_flops: int = 0
    llm_flops_full: int = 0
    windows: int = 0
    windows_skipped: int = 0
    seconds: dict = field(default_factory=lambda: {"plan": 0.0, "vit": 0.0, "prefill": 0.0, "answer": 0.0})

    @property
    def flops(self) -> int:
        """ViT + LLM prefill FLOPs executed."""
        return self.vit_flops + self.llm_flops

    def flops_fraction(self, base: "Counters") -> float:
        """These FLOPs against another run's (full compute on the same frames)."""
        return self.flops / max(1, base.flops)

    def add(self, other: "Counters") -> None:
        for k, v in vars(other).items():
            if isinstance(v, dict):
                for s, t in v.items():
                    self.seconds[s] = self.seconds.get(s, 0.0) + t
            else:
                setattr(self, k, getattr(self, k) + v)


class _Group:
    """Questions sharing window and stride share one prefill (one KV cache) per window."""

    def __init__(self, adapter, method: Method, window: int, stride: int, questions: list[Question], seed: int):
        t = adapter.geometry.temporal
        if window % t or stride % t or not 0 < stride <= window:
            raise ValueError(f"window ({window}) and stride ({stride}) must be whole temporal patches of {t} frames, "
                             f"0 < stride <= window")
        self.patches, self.stride = window // t, stride // t
        self.questions = questions
        self.ids = [adapter.chat_question(q.text) for q in questions]
        self.prefill = WindowPrefill(adapter, adapter.chat_system(SYSTEM_PROMPT), policy=method.kv_policy,
                                     budget=method.kv_budget, full_every=method.full_every, seed=seed)


@dataclass
class Due:
    """A window that became due. The engine prefills and answers the due windows of all streams together; the
    pipeline turns its answers into events (`answered`)."""

    pipeline: "StreamPipeline"
    group: _Group
    window: Window


class StreamPipeline:
    def __init__(self, stream: str, adapter, method: Method, questions: list[Question], input_hw: tuple[int, int],
                 fps: float, seed: int = 0):
        self.stream, self.adapter, self.method, self.fps = stream, adapter, method, fps
        self.behind = False  # set by the engine while the stream lags real time: due windows are skipped
        self.key = (stream, method.name)  # the ViT cache of this stream under this method
        self.geometry = adapter.geometry
        self.grid = self.geometry.grid(*input_hw)
        groups: dict[tuple[int, int], list[Question]] = {}
        for q in questions:
            groups.setdefault((q.window, q.stride), []).append(q)
        self.groups = [_Group(adapter, method, w, s, qs, seed) for (w, s), qs in groups.items()]
        self.segments: deque[Segment] = deque(maxlen=max(g.patches for g in self.groups))
        self.cmap = ChangeMap(self.geometry, input_hw, method.rule) if method.select == "codec" else None
        plan = method.plan
        if method.grid == "dropped":
            # a dropped window holds what stands still only through a full encoding inside it
            shortest = min(g.patches for g in self.groups)
            plan = replace(plan, refresh_every=min(plan.refresh_every or shortest, shortest))
        self.planner = TokenPlanner(self.geometry, plan) if method.select == "codec" else None
        self.counters = Counters()
        self._frames: list[SampledFrame] = []
        self._t0 = 0.0  # stream time of the first sample
        self._pending: deque = deque()  # (patch number, frames, keep, changed) of requests not encoded yet
        self._plan = None
        self._prev_luma: np.ndarray | None = None
        self._stc_ref: np.ndarray | None = None
        self._prev_embeds: torch.Tensor | None = None
        self._age = np.full(self.grid[0] * self.grid[1], 1 << 30)  # patches since each token last changed
        self._full_vit = count_flops(adapter.config, vision=vision_work(adapter.config, [np.ones(self.grid, bool)],
                                                                        context=False)).vit

    # ---- before the ViT ---------------------------------------------------------------------------------

    def push(self, sampled: SampledFrame) -> EncodeRequest | None:
        """Take one sampled frame; an encode request once its temporal patch is complete, else None. Patches are
        numbered here (1, 2, ...): the engine may batch several of one stream before any comes back."""
        t0 = time.perf_counter()
        self.counters.samples += 1
        self._frames.append(sampled)
        if self.planner is not None:
            self._plan = self.planner.push(self.cmap.update(sampled)) or self._plan
        if len(self._frames) < self.geometry.temporal:
            self.counters.seconds["plan"] += time.perf_counter() - t0
            return None
        frames, self._frames = self._frames, []
        rgb = np.stack([f.rgb for f in frames])
        plan = self._plan  # _select consumes it
        keep = self._select(rgb)
        # what changed and was encoded, for `linger`: the other selectors keep exactly what they judge changed
        changed = plan.fresh if self.method.select == "codec" else np.ones(self.grid, bool) if keep is None else keep
        self.counters.seconds["plan"] += time.perf_counter() - t0
        n = self.grid[0] * self.grid[1]
        self.counters.patches += 1
        self.counters.tokens += n
        self._pending.append((self.counters.patches, frames, keep, changed))
        return EncodeRequest(self.key, rgb, keep)

    def _select(self, rgb: np.ndarray) -> np.ndarray | None:
        m = self.method
        if m.select == "codec":
            keep, self._plan = self._plan.keep, None
            self.cmap.encoded(keep)
            return keep
        if m.select == "pixel":  # RLT: pixel change of the patch's last frame against the previous patch's
            y = luma(rgb[-1])
            prev, self._prev_luma = self._prev_luma, y
            if prev is None:
                return None
            return token_mean_abs_diff(y, prev, self.geometry.token_px, sub=m.rule.sub_blocks) > m.rule.pixel_tau
        if m.select == "stc":
            return self._stc(rgb)
        if m.select == "uniform":  # whole temporal patches at the retention rate
            every = max(1, round(1 / m.retention))
            return np.full(self.grid, self.counters.patches % every == 0)
        return None

    def _stc(self, rgb: np.ndarray) -> np.ndarray | None:
        """STC's cacher: every `stc_every` patches a new reference is encoded in full; in between, the tokens whose
        pixels are least similar (cosine) to the reference's are recomputed, `retention` of them."""
        t = self.geometry.token_px
        rows, cols = self.grid
        y = luma(rgb[-1]).reshape(rows, t, cols, t).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
        if self.counters.patches % self.method.stc_every == 0 or self._stc_ref is None:  # 0-based patch number
            self._stc_ref = y
            return None
        y0 = y - y.mean(1, keepdims=True)
        r0 = self._stc_ref - self._stc_ref.mean(1, keepdims=True)
        sim = (y0 * r0).sum(1) / (np.linalg.norm(y0, axis=1) * np.linalg.norm(r0, axis=1) + 1e-6)
        keep = np.zeros(rows * cols, bool)
        keep[np.argsort(sim, kind="stable")[:max(1, round(self.method.retention * rows * cols))]] = True
        return keep.reshape(self.grid)

    # ---- after the ViT ----------------------------------------------------------------------------------

    def encoded(self, patch: EncodedPatch, vit_seconds: float) -> list[Due]:
        number, frames, keep, changed = self._pending.popleft()  # requests come back in the order they were made
        if number == 1:
            self._t0 = frames[0].signal.pts
        c = self.counters
        c.seconds["vit"] += vit_seconds
        # a request may be encoded in full although a mask was given (no cache yet): count what ran
        ran = np.zeros(self.grid[0] * self.grid[1], bool)
        ran[patch.token_index.numpy()] = True
        c.tokens_encoded += int(ran.sum())
        c.vit_flops += count_flops(self.adapter.config, vision=vision_work(
            self.adapter.config, [ran.reshape(self.grid)], context=self.method.vit_mode == "context")).vit
        c.vit_flops_full += self._full_vit
        seg = self._segment(patch, number, frames, ran, changed.reshape(-1),
                            anchor=keep is None or bool(np.all(keep)))
        if seg.embeds.shape[0]:  # a patch of which nothing reaches the LLM (uniform subsampling) has no segment
            self.segments.append(seg)
            c.tokens_llm += seg.embeds.shape[0]
        return self._due(number)

    def _segment(self, patch: EncodedPatch, key: int, frames: list[SampledFrame], ran: np.ndarray,
                 changed: np.ndarray, anchor: bool) -> Segment:
        seconds = frames[0].signal.pts
        if self.method.post == "evs":
            return self._evs(patch, key, seconds)
        # a dropped grid shows what was encoded, and what changed within the last `linger` patches: an object that
        # stops stays in view; a token a full encoding merely refreshed does not linger
        self._age = np.where(changed, 0, self._age + 1)
        shown = ran | (self._age <= self.method.linger) if self.method.grid == "dropped" else np.ones_like(ran)
        if patch.full_embeds is not None and not np.array_equal(shown, ran):
            index = torch.from_numpy(np.flatnonzero(shown))
            on = index.to(patch.full_embeds.device)
            return Segment(key, patch.full_embeds[on], Segment.full_coords(*self.grid)[index], self.grid, seconds,
                           anchor, changed=torch.from_numpy(ran[shown]),
                           deepstack=[d[on] for d in patch.full_deepstack] if patch.full_deepstack else None)
        return Segment.from_encoded(key, patch, seconds=seconds, anchor=anchor,
                                    changed=torch.ones(len(patch.token_index), dtype=torch.bool))

    def _evs(self, patch: EncodedPatch, key: int, seconds: float) -> Segment:
        """EVS (post-ViT): drop the tokens most similar to the same token of the previous temporal patch."""
        e = patch.embeds
        prev, self._prev_embeds = self._prev_embeds, e
        index = torch.arange(e.shape[0])
        if prev is not None and prev.shape == e.shape:
            sim = torch.nn.functional.cosine_similarity(e.float(), prev.float(), dim=-1)
            k = max(1, round(self.method.retention * e.shape[0]))
            index = torch.sort(torch.topk(-sim, k).indices).values.cpu()  # bookkeeping stays on the CPU
        coords = torch.stack([index // self.grid[1], index % self.grid[1]], dim=1)
        return Segment(key, e[index], coords, self.grid, seconds, anchor=prev is None,
                       deepstack=[d[index] for d in patch.deepstack] or None)

    # ---- windows ----------------------------------------------------------------------------------------

    def _due(self, n: int) -> list[Due]:
        """The windows that end with patch number n."""
        due = []
        for g in self.groups:
            if n < g.patches or (n - g.patches) % g.stride:
                continue
            index = (n - g.patches) // g.stride
            if self.behind:
                self.counters.windows_skipped += 1
                continue
            segs = [s for s in self.segments if s.key > n - g.patches]
            if segs:
                due.append(Due(self, g, Window(segs, index)))
        return due

    def answered(self, due: Due, stats: PrefillStats, answers: list[Answer], seconds: tuple[float, float]) \
            -> list[Event]:
        """Events and counters of a due window, prefilled and answered (by the engine, with other windows);
        seconds: this window's share of the prefill and answer calls."""
        g, index = due.group, due.window.index
        c = self.counters
        c.seconds["prefill"] += seconds[0]
        c.seconds["answer"] += seconds[1]
        c.llm_flops += stats.flops
        # against full compute: every token of every patch of the window, prefilled from scratch
        present = sum(seg.embeds.shape[0] for seg in due.window.segments)
        full_len = stats.tokens - present + g.patches * self.grid[0] * self.grid[1]
        c.llm_flops_full += count_flops(self.adapter.config, prefill=prefill_work(np.arange(full_len), logits=0)).llm
        c.windows += 1
        start = (index * g.stride) * self.geometry.temporal / self.fps + self._t0
        end = start + g.patches * self.geometry.temporal / self.fps
        return [Event(self.stream, self.method.name, index, start, end, q.text, a.text.strip(), a.p_yes,
                      a.p_yes >= q.threshold) for q, a in zip(g.questions, answers)]
