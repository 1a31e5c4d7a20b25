"""Train the reference VLM on synthetic labelled streams (CPU, resumable).

    python -m codecsight.reference.train --data out/data/train --heldout out/data/heldout --minutes 60
    (continue from the bundled weights in a later session: add --init codecsight/reference_model)

Each window is decoded and sampled exactly as the runtime does (2 fps, the model's input size), laid out by the
runtime's own window layout and position planner, and every standing question of the window is answered from one
shared prefix (the frames are run once per window, the questions as a batch on its KV): a 2-way loss on the
"Yes"/"No" logits of the answer token, class-balanced per question type, a weak loss on the answer word and the
stop token over the whole vocabulary, and per-token targets from the scene (targets.py). Shorter windows come
first (--curriculum), and some windows are shown in grey levels (--grey) or recoloured (--recolour: hue turned,
saturation and brightness scaled) without their colour questions, and in some of those every object takes a
colour of its own (--object-colour); with --kind-from-shape only those windows are asked about kind and position.

Pruned inputs are made in distribution with the stream's real change map and token plan: in a share of the
windows (--pruned, 0.6) the tokens the plan would not re-encode are left out (`dropped`, after lingering as the
runtime's default lets them; --dropped of those windows, 0.5) or take the embedding of their last encoding (the
runtime's `cached` grid); in the rest every token is fresh.
Checkpoints go to --out every few minutes; the same command resumes.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from codecsight.geometry import QWEN2_5_VL
from codecsight.models import load_adapter
from codecsight.plan import plan_file
from codecsight.prefill.window import Segment, Window, build_layout
from codecsight.reference.model import INPUT_HW, RUNTIME, build, grow, spatial_rope
from codecsight.reference.targets import CLASSES, EVENTS, SceneTrack, event_targets, scene_track, token_targets
from codecsight.runtime.methods import METHODS
from codecsight.runtime.pipeline import SYSTEM_PROMPT
from codecsight.signals import ChangeRule
from codecsight.synth.labels import QUESTION_TYPES, QUESTIONS, reversed_in_time, window_labels
from codecsight.synth.scene import COLOURS, KINDS, colour_rgb, free_colour, object_layers, scene_from_json
from codecsight.vision.preprocess import video_pixel_values


@dataclass
class Stream:
    frames: np.ndarray  # (N, H, W, 3) uint8 samples at 2 fps (memory-mapped from the cache: arms share one copy)
    keep: np.ndarray  # (N // 2, rows, cols) bool: what the codec plan encodes per temporal patch
    changed: np.ndarray  # (N // 2, rows, cols) bool: what changed and was encoded (`PatchPlan.fresh`)
    targets: torch.Tensor | None = None  # (N // 2, rows * cols, classes): what lies under each token (targets.py)
    any_colour: bool = False  # objects in arbitrary colours (synth split `anycolour`): no colour targets
    track: SceneTrack | None = None  # what each window's event targets are made from (targets.py)


@dataclass
class Example:
    stream: str
    first: int  # first sample of the window
    questions: list[str]
    answers: list[int]  # 1 = Yes
    types: list[str]
    length: int = RUNTIME["window"]  # samples
    backward: bool = False  # shown in reverse order, its answers those of the reversed samples (--reverse)


def _write_atomically(path: str, write) -> None:
    """Another training run reading the same split (two arms side by side) sees the old file or the new one, never
    half of it: session 32 lost an arm to a cache a second arm was rewriting."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_streams(data: str, geometry, size: tuple[int, int] = INPUT_HW) -> dict[str, Stream]:
    """Every stream of a split decoded at the model's input `size` and planned as the runtime does; kept beside the
    videos after the first time (decoding 30 streams takes minutes, and training restarts): the plan's masks in a
    .npz, the samples in a .npy that is memory-mapped, so that training runs side by side share one copy in the page
    cache. A cache planned under another change rule than the runtime's (or before session 10, without the change
    masks) is planned again, and so is one cut short (a run stopped while writing it); one of sessions 10-27
    (samples inside the .npz) is split in two."""
    rule = repr(ChangeRule())
    out = {}
    names = sorted(f for f in os.listdir(data) if f.endswith(".mp4"))
    for i, name in enumerate(names):
        path = os.path.join(data, name)
        cached = path[:-4] + f".samples-{size[0]}x{size[1]}.npz"
        samples = cached[:-4] + ".npy"
        keep = changed = frames = None
        if os.path.exists(cached) and os.path.getmtime(cached) > os.path.getmtime(path):
            try:
                with np.load(cached) as z:
                    if "changed" in z and str(z.get("rule")) == rule:
                        keep, changed = z["keep"], z["changed"]
                        frames = z["frames"] if "frames" in z else None  # the one-file cache of sessions 10-27
                if keep is not None and frames is None:
                    np.load(samples, mmap_mode="r")  # raises if missing or cut short
            except (OSError, EOFError, ValueError, zipfile.BadZipFile):
                keep = changed = frames = None
        if keep is None:
            frames, plans = plan_file(path, geometry, size, RUNTIME["fps"])
            keep, changed = np.stack([p.keep for p in plans]), np.stack([p.fresh for p in plans])
        if frames is not None:
            _write_atomically(samples, lambda f: np.save(f, frames))
            _write_atomically(cached, lambda f: np.savez(f, keep=keep, changed=changed, rule=np.array(rule)))
        with open(path[:-4] + ".json") as f:
            scene_json = json.load(f)
        scene = scene_from_json(scene_json)
        track = scene_track(scene, RUNTIME["fps"], *keep.shape[1:])
        targets = token_targets(scene, RUNTIME["fps"], *keep.shape[1:], geometry.temporal, cover=track.cover,
                                states=track.states)
        if len(targets) < len(keep):
            raise ValueError(f"{name}: {len(keep)} temporal patches decoded, {len(targets)} in its scene")
        any_colour = scene_json.get("split") == "anycolour"
        frames = np.load(samples, mmap_mode="r")
        out[path] = Stream(frames, keep, changed, torch.from_numpy(targets[:len(keep)]), any_colour, track)
        print(f"  decoded {name}: {len(frames)} samples ({i + 1}/{len(names)})", file=sys.stderr, flush=True)
    return out


def group_windows(rows, data: str, rate: float, length: int = RUNTIME["window"]) -> list[Example]:
    """Label rows ({"video", "start", "question", "type", "answer"}) -> one Example per window."""
    by_window: dict[tuple[str, float], Example] = {}
    for r in rows:
        key = (r["video"], r["start"])
        if key not in by_window:
            by_window[key] = Example(os.path.join(data, r["video"]), round(r["start"] * rate), [], [], [], length)
        ex = by_window[key]
        ex.questions.append(r["question"])
        ex.answers.append(int(r["answer"] == "Yes"))
        ex.types.append(r["type"])
    return list(by_window.values())


def reversed_example(track: SceneTrack, ex: Example) -> Example:
    """The window shown the other way in time (--reverse): each of its questions answered anew from the scene at
    the samples in that order (a fall becomes a get-up, a meeting a parting: the same frames, the other answer); one
    whose answer comes out borderline is left out, as the labels leave it out."""
    backward = not ex.backward
    st = reversed_in_time(track.states) if backward else track.states
    end = st.visible.shape[1] - ex.first if backward else ex.first + ex.length  # sample k is (samples - 1 - k) there
    window = slice(end - ex.length, end)
    by_text = {q.text: q for q in QUESTIONS}
    out = Example(ex.stream, ex.first, [], [], [], ex.length, backward)
    for text, t in zip(ex.questions, ex.types):
        if (a := by_text[text].answer(st, window)) != 0.5:
            out.questions.append(text)
            out.answers.append(int(a == 1))
            out.types.append(t)
    return out


def edge_windows(examples: list[Example], streams: dict[str, Stream], types: tuple[str, ...], reach: int = 3,
                 near: float = 60.0) -> list[Example]:
    """The runtime-length windows whose answer to a question of `types` is decided at the window's edges: it comes
    out otherwise for the window moved by 1..`reach` samples either way (an event in the first or last samples, or
    just outside); for "touch" also the near misses, where no contact begins but a pair comes within `near` px.
    The model misses these most (session 33: a contact in the last temporal patch missed in 16 of 47 held-out
    windows, mid-window contacts in 20 of 280); `--edges` draws them more often."""
    asked = [q for q in QUESTIONS if q.type in types]
    out = []
    for ex in examples:
        if ex.length != RUNTIME["window"] or ex.backward:
            continue
        st = streams[ex.stream].track.states
        last = st.visible.shape[1] - ex.length
        shifted = [slice(f, f + ex.length) for d in range(1, reach + 1) for f in (ex.first - d, ex.first + d)
                   if 0 <= f <= last]
        window = slice(ex.first, ex.first + ex.length)
        for q in asked:
            answer = q.answer(st, window)
            if any(q.answer(st, w) != answer for w in shifted) or (
                    q.type == "touch" and answer == 0 and st.gap.size and st.gap[:, window].min() < near):
                out.append(ex)
                break
    return out


def by_answer(windows: list[Example], types: tuple[str, ...]) -> list[list[Example]]:
    """`windows` grouped by their answer to each of `types`, empty groups left out (a window sits in one group per
    type it is asked). Drawing a group, then a window of it, gives each type's Yes and No an equal share
    (--edge-balance): the edge windows hold more hard No than hard Yes, and drawn as they come they moved touch's
    prior (session 34)."""
    groups = [[ex for ex in windows if (t, a) in zip(ex.types, ex.answers)] for t in types for a in (1, 0)]
    return [g for g in groups if g]


def load_examples(data: str, rate: float) -> list[Example]:
    with open(os.path.join(data, "labels.jsonl")) as f:
        return group_windows(map(json.loads, f), data, rate)


@dataclass
class Forward:
    """One window through the model: what the losses and the held-out report need."""

    yes_no: torch.Tensor  # (Q, 2) logits of "Yes" and "No" at each question's answer position
    answer: torch.Tensor  # (Q, hidden) final (normed) state at the answer position: its logits are answer @ table.T
    end: torch.Tensor | None  # (Q, hidden) final state after the given answer word (should give <|im_end|>)
    vision: torch.Tensor  # (temporal patches, tokens, hidden): the vision tower's output, before substitution
    hidden: torch.Tensor  # (kept tokens, hidden): the language model's middle state at the visual tokens it saw
    kept: torch.Tensor  # (temporal patches * tokens,) bool: which tokens of the window the language model saw


def short_examples(data: str, length: int) -> list[Example]:
    """Windows of `length` samples (stride a quarter of it), labelled from each stream's scene like the runtime's."""
    out = []
    for name in sorted(f for f in os.listdir(data) if f.endswith(".json") and f != "meta.json"):
        with open(os.path.join(data, name)) as f:
            scene = scene_from_json(json.load(f))
        rows = window_labels(scene, RUNTIME["fps"], length, max(2, length // 4))
        out += group_windows(({**r, "video": name[:-5] + ".mp4"} for r in rows), data, RUNTIME["fps"], length)
    return out


def colour_transform(hue: float = 0.0, saturation: float = 1.0, gain: float = 1.0) -> np.ndarray:
    """RGB -> RGB matrix: turn the hue by `hue` radians about the grey axis, scale the saturation (0: grey levels)
    and the brightness. Rotation and saturation both fix the grey axis, so together they are
    s (cos h I + sin h K) + (1 - s cos h) P, with P the projection on the grey axis and K the cross product with it."""
    P = np.full((3, 3), 1 / 3)
    K = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / np.sqrt(3)
    return gain * (saturation * (np.cos(hue) * np.eye(3) + np.sin(hue) * K) + (1 - saturation * np.cos(hue)) * P)


GREY = colour_transform(saturation=0.0)
# Recolouring ranges. Saturation reaches 0 and brightness 1.6 so that a training object can look near-white (a
# held-out person is white, and no training person is light): at saturation 0 and gain 1.5 yellow becomes (237,) * 3.
RECOLOUR_SATURATION = (0.0, 1.2)
RECOLOUR_GAIN = (0.8, 1.6)


def draw_tint(rng: random.Random, grey: float, recolour: float) -> np.ndarray | None:
    """A window's colour transform: grey levels with probability `grey`, a random recolouring with probability
    `recolour`, else None (natural colours)."""
    draw = rng.random()
    if draw < grey:
        return GREY
    if draw < grey + recolour:
        return colour_transform(rng.uniform(-np.pi, np.pi), rng.uniform(*RECOLOUR_SATURATION),
                                rng.uniform(*RECOLOUR_GAIN))
    return None


def stretch_contrast(frames: np.ndarray, factor: float) -> np.ndarray:
    """Frames' distance from their mean grey level times `factor` (training only). Recolouring scales object and
    background alike, so a training person never stood out from the background as far as a white one does; the
    model learnt contrast as evidence of a box (session 19: flattening the held-out frames' contrast by 0.6 made
    the bundled model find 95% of the white persons it had found 65% of)."""
    f = frames.astype(np.float32)
    m = f.mean()
    return np.clip(m + factor * (f - m), 0, 255).round().astype(np.uint8)


def recolour_objects(frames: np.ndarray, track: SceneTrack, first: int, rng: np.random.Generator) -> np.ndarray:
    """The window's frames (samples first, first + 1, ...) with every object of the scene in a colour of its own,
    drawn as the anycolour split draws them (`free_colour`: never near a held-out pair's colour for its kind;
    training only). Whole-frame recolouring turns an object and its background alike, so kind stays tied to how an
    object's colour sits against the background; here each object changes alone. The rendered body colour is
    swapped, shade by shade, with what the codec and the resize made of the rest (noise, edges, the object's own
    tone) kept; camera shake (at most a few px) and the illumination drift (2-12%) are not followed."""
    scene = track.scene
    new = np.array([colour_rgb(free_colour(rng, o.kind)) for o in scene.objects], np.float32).reshape(-1, 3)
    delta = np.concatenate([new - np.array([colour_rgb(o.colour) for o in scene.objects], np.float32).reshape(-1, 3),
                            np.zeros((1, 3), np.float32)])  # index -1: background, unchanged
    out = frames.astype(np.float32)
    for k in range(len(frames)):
        owner, shade = object_layers(scene, float(track.times[first + k]))
        native = torch.from_numpy(shade[..., None] * delta[owner]).permute(2, 0, 1)[None]
        out[k] += F.interpolate(native, size=frames.shape[1:3], mode="area")[0].permute(1, 2, 0).numpy()
    return np.clip(out, 0, 255).round().astype(np.uint8)


SHAPE_TYPES = ("kind", "position")  # question types about what an object is, which its colour must not answer


def withheld(colour: bool, shape: bool, blind: bool, kind_from_shape: bool) -> bool:
    """Whether a window is not asked a question (or not trained on a target) about colour or about what an object
    is: a window whose colours were taken away (blind: grey or recoloured) is not asked about colour; with
    kind_from_shape, only such a window is asked about kind and position, so that a natural colour never counts as
    evidence for or against a kind."""
    return (blind and colour) or (kind_from_shape and not blind and shape)


def answer_weights(types: list[str], answers: list[int], pos_weight: dict[str, float], blind: bool,
                   kind_from_shape: bool = False, type_balance: bool = False,
                   type_weight: dict[str, float] | None = None) -> torch.Tensor:
    """Weight of each question's answer loss: a positive weighs its type's class balance; 0 where `withheld`.
    type_balance: each type asked weighs alike in total (a window asks four colours but one "fall").
    type_weight: a factor per type on top (types not named keep 1)."""
    w = torch.tensor([0.0 if withheld(t == "colour", t in SHAPE_TYPES, blind, kind_from_shape)
                      else pos_weight[t] if a else 1.0 for a, t in zip(answers, types)])
    if type_balance:
        asked = [t for t, x in zip(types, w.tolist()) if x > 0]
        w = w / torch.tensor([max(1, asked.count(t)) for t in types])
    if type_weight:
        w = w * torch.tensor([type_weight.get(t, 1.0) for t in types])
    return w


def positive_weights(counts: dict[str, list[int]], cap: float = 6.0) -> dict[str, float]:
    """Class balance per question type over the answers trained on ({type: [no, yes]}): a positive weighs neg/pos,
    at most `cap` (--pos-weight-cap). The cap also sets where the trained P(Yes) crosses 0.5: a positive weight w
    puts it at a true probability of 1 / (1 + w), and F1's best cut on calibrated probabilities is near F1/2 (about
    0.45), not at 0.18 as fall's w = 4.4 (18% Yes) does."""
    return {t: min(cap, max(1.0, c[0] / max(1, c[1]))) for t, c in counts.items()}


def answer_loss(yes_no: torch.Tensor, answers: list[int], weight: torch.Tensor, focal: float = 0.0) -> torch.Tensor:
    """The window's weighted 2-way loss on the "Yes"/"No" logits. focal: each question's loss is scaled by
    (1 - p)^focal, p the probability it gives the right answer (focal loss): answers already right with
    confidence stop pulling the shared weights, those still wrong or unsure keep their full pull."""
    ce = F.cross_entropy(yes_no, torch.tensor([0 if a else 1 for a in answers]), reduction="none")  # 0 = "Yes"
    if focal:
        ce = ce * (1 - torch.exp(-ce)) ** focal
    return (ce * weight).sum() / weight.sum()


def target_mask(blind: bool, kind_from_shape: bool = False, contact: bool = False) -> torch.Tensor:
    """Which per-token targets (CLASSES) a window trains: all but those `withheld`, and "touching" only with
    `contact` (--contact-target)."""
    return torch.tensor([not withheld(c in COLOURS, c in KINDS, blind, kind_from_shape) and (contact or c != "touching")
                         for c in CLASSES], dtype=torch.float32)


# questions per window whose answer word and end of turn are scored over the whole vocabulary (a sample of them:
# an unbiased estimate of the mean over all of them, at a 151,668-row product per row)
VOCABULARY_ROWS = 2
PRUNING = ("none", "cached", "dropped")  # what the LLM sees of the tokens the codec plan does not re-encode


def window_forward(adapter, stream: Stream, ex: Example, pruning: str, system_ids, question_ids,
                   answers: list[int] | None = None, tint: np.ndarray | None = None, contrast: float = 1.0,
                   object_colours: np.random.Generator | None = None,
                   linger: int = METHODS["codecsight"].linger) -> Forward:
    """Every question of one window, with gradients, through the runtime's layout and positions. pruning: the
    runtime's two styles (`Method.grid`) on the stream's real token plan, or none; tokens that changed linger as
    the runtime's default lets them (`Method.linger`). With `answers` (1 = Yes), each question is followed by its answer
    word, so the step after it can learn to stop. tint: a 3x3 colour transform of the frames (`colour_transform`;
    training only, see `main`); contrast: `stretch_contrast` after it; object_colours: a generator for
    `recolour_objects` before both (None: the objects keep their colours)."""
    if pruning not in PRUNING:
        raise ValueError(f"pruning must be one of {PRUNING}, got {pruning!r}")
    n = ex.length
    t = adapter.geometry.temporal
    frames = np.array(stream.frames[ex.first:ex.first + n])  # a copy: the cache is a read-only memory map
    if object_colours is not None:
        frames = recolour_objects(frames, stream.track, ex.first, object_colours)
    if tint is not None:
        frames = np.clip(frames @ tint.T.astype(np.float32), 0, 255).round().astype(np.uint8)
    if contrast != 1.0:
        frames = stretch_contrast(frames, contrast)
    if ex.backward:
        if pruning != "none":
            raise ValueError("a window shown backwards has no token plan (the codec's runs forwards): pruning 'none'")
        frames = np.ascontiguousarray(frames[::-1])
    pixels, (gt, gh, gw) = video_pixel_values(frames, adapter.geometry)
    vision = adapter.model.model.visual(pixels, grid_thw=torch.tensor([[gt, gh, gw]])).pooler_output
    rows, cols = gh // 2, gw // 2
    vision = embeds = vision.view(gt, rows * cols, -1)
    keep = torch.ones(gt, rows * cols, dtype=torch.bool)
    if pruning != "none":
        # tokens the plan does not re-encode keep their last encoding (a window starts encoded)
        lo = ex.first // t
        keep = torch.from_numpy(stream.keep[lo:lo + gt].reshape(gt, rows * cols))
        changed = torch.from_numpy(stream.changed[max(0, lo - linger):lo + gt].reshape(-1, rows * cols))
        before = len(changed) - gt
        out, last = [embeds[0]], embeds[0]
        for i in range(1, gt):
            last = torch.where(keep[i][:, None], embeds[i], last)
            out.append(last)
        embeds = torch.stack(out)
        # cached: every token is shown; dropped: those encoded, and those changed within the last `linger`
        # patches (the plan's periodic full encoding keeps every window whole)
        keep = torch.ones_like(keep) if pruning == "cached" else torch.stack(
            [keep[i] | changed[max(0, i + before - linger):i + before + 1].any(0) for i in range(gt)])
    coords = Segment.full_coords(rows, cols)
    segs = [Segment(i, embeds[i][keep[i]], coords[keep[i]], (rows, cols),
                    seconds=(ex.first + i * t) / RUNTIME["fps"]) for i in range(gt) if keep[i].any()]
    lay = build_layout(adapter, Window(segs), system_ids)
    lm = adapter.language_model()
    cache = DynamicCache()
    states = lm(inputs_embeds=lay.embeds[None], position_ids=lay.positions[:, None], past_key_values=cache,
                use_cache=True, output_hidden_states=True).hidden_states
    hidden = states[len(states) // 2][0, lay.visual]  # what the upper layers' keys are made from, kept tokens only
    yes, no = adapter.yes_no_ids()
    q_ids = [question_ids[q] for q in ex.questions]
    if answers is not None:
        q_ids = [q + [yes if a else no] for q, a in zip(q_ids, answers)]
    width = max(map(len, q_ids))
    ids = torch.tensor([q + [q[-1]] * (width - len(q)) for q in q_ids])  # right-padded: causal, padding unseen
    Q = len(q_ids)
    batch = DynamicCache(ddp_cache_data=[(layer.keys.expand(Q, -1, -1, -1), layer.values.expand(Q, -1, -1, -1))
                                         for layer in cache.layers])
    pos = (lay.cursor + torch.arange(width)).expand(3, Q, width)
    h = lm(inputs_embeds=adapter.embed_text(ids.flatten()).view(Q, width, -1), position_ids=pos,
           past_key_values=batch, use_cache=True).last_hidden_state
    ends = torch.tensor([len(q) - 1 for q in q_ids])
    at = ends - 1 if answers is not None else ends
    answer = h[torch.arange(Q), at]  # the text model's output is already normed
    end = h[torch.arange(Q), ends] if answers is not None else None
    # the output layer is the tied embedding table: the two rows read through the input embedding, which a
    # training step gathers once (`step_vocabulary`)
    yes_no = answer @ adapter.embed_text([yes, no]).T
    return Forward(yes_no, answer, end, vision, hidden, keep.flatten())


class StepVocabulary(torch.nn.Module):
    """The rows of a tied (vocabulary, hidden) embedding table that a training step reads, gathered once per step.

    Every lookup in the whole table gives all of its 151,668 x 48 entries a dense gradient in backward (a 29 MB
    fill and add per lookup, and a window makes a dozen: the system prompt, the text around each frame, the
    questions, the Yes/No rows); gathered once, the step pays that once. Same values, so the forward is unchanged."""

    def __init__(self, table: torch.nn.Embedding, ids):
        super().__init__()
        self.ids = torch.tensor(sorted(set(ids)))
        self.rows = table.weight[self.ids]
        self.slot = torch.full((table.num_embeddings,), -1)
        self.slot[self.ids] = torch.arange(len(self.ids))

    def forward(self, ids):
        slot = self.slot[ids]
        if (slot < 0).any():
            raise KeyError(f"ids outside the step's vocabulary: {sorted(set(ids[slot < 0].tolist()))}")
        return self.rows[slot]


@contextmanager
def step_vocabulary(adapter, ids):
    """Within the block the language model embeds text through a `StepVocabulary` of `ids` (tied models only:
    the output layer's rows are read through it too)."""
    if not adapter.model.config.get_text_config().tie_word_embeddings:
        raise ValueError("a step vocabulary reads the output layer through the input embedding: untied model")
    lm = adapter.language_model()
    table = lm.embed_tokens
    lm.embed_tokens = StepVocabulary(table, ids)
    try:
        yield lm.embed_tokens
    finally:
        lm.embed_tokens = table


def evaluate(adapter, streams, examples, system_ids, question_ids, pruning="none") -> dict:
    """Per question type: accuracy and F1 at P(Yes) >= 0.5."""
    stats: dict[str, list[int]] = {}
    adapter.model.eval()
    with torch.no_grad():
        for ex in examples:
            fwd = window_forward(adapter, streams[ex.stream], ex, pruning, system_ids, question_ids)
            pred = fwd.yes_no.argmax(-1) == 0
            for p, a, t in zip(pred.tolist(), ex.answers, ex.types):
                s = stats.setdefault(t, [0, 0, 0, 0])
                s[0 if p and a else 1 if p else 2 if a else 3] += 1
    adapter.model.train()
    out = {}
    for t, (tp, fp, fn, tn) in sorted(stats.items()):
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        balanced = (tp / max(1, tp + fn) + tn / max(1, tn + fp)) / 2
        out[t] = {"f1": round(f1, 3), "acc": round((tp + tn) / (tp + fp + fn + tn), 3),
                  "balanced_acc": round(balanced, 3), "support": tp + fp + fn + tn, "positive": tp + fn}
    return out


def initial_model(seed: int, text_layers: int | None, rope: dict | None, init: str | None,
                  size: tuple[int, int] | None = None, vision_layers: int | None = None,
                  text_mlp: int | None = None, vision_mlp: int | None = None, text_hidden: int | None = None,
                  vision_hidden: int | None = None):
    """A fresh model, or `init`'s weights in one (grown into a deeper or wider LLM or ViT if the depths, MLP widths or
    hidden widths ask for more than init has; default: init's). The rotary is `rope`, else init's, else the
    bundled config's, and the input size `size`, else init's, else INPUT_HW: neither is a weight, so a continued model
    would otherwise fall back to the defaults silently."""
    init = load_adapter(init) if init else None
    rope = rope or (init and init.model.config.text_config.rope_parameters)
    if init:
        config = init.model.config
        text_layers = text_layers or config.text_config.num_hidden_layers
        vision_layers = vision_layers or config.vision_config.depth
        text_mlp = text_mlp or config.text_config.intermediate_size
        vision_mlp = vision_mlp or config.vision_config.intermediate_size
        text_hidden = text_hidden or config.text_config.hidden_size
        vision_hidden = vision_hidden or config.vision_config.hidden_size
    adapter = build(seed, text_layers, rope, vision_layers, text_mlp, vision_mlp, text_hidden, vision_hidden)
    size = size or (init.default_input_hw() if init else INPUT_HW)
    adapter.model.config.codecsight["input_size"] = list(size)
    if init:
        grow(adapter, init)
    return adapter


def size_hw(text: str) -> tuple[int, int]:
    """An "HxW" command-line value as two ints."""
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW in px, e.g. 224x308, got {text!r}") from None
    return h, w


def float_pair(text: str) -> tuple[float, float]:
    """An "A,B" command-line value as two floats."""
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers as A,B, got {text!r}") from None
    return a, b


def type_factors(text: str) -> dict[str, float]:
    """A "TYPE=W,..." command-line value (e.g. fall=3,touch=2): a positive loss factor per question type."""
    out = {}
    for item in text.split(","):
        t, _, w = item.partition("=")
        try:
            out[t] = float(w)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected TYPE=W,..., e.g. fall=3,touch=2, got {text!r}") from None
        if t not in QUESTION_TYPES or not 0 < out[t] <= 100:
            raise argparse.ArgumentTypeError(f"{item!r}: the type must be one of {', '.join(QUESTION_TYPES)} and the "
                                             f"weight within (0, 100]")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, nargs="+", help="training split(s) (codecsight synth output)")
    p.add_argument("--heldout", required=True, help="held-out split, for the progress report")
    p.add_argument("--out", default="out/reference", help="checkpoints and log")
    p.add_argument("--save", default=None, help="folder for save_pretrained at the end (default: the bundled one)")
    p.add_argument("--keep", choices=("best", "last"), default="best", help="weights saved at the end: the step the "
                   "held-out probe (120 windows) scored best, or the last step's")
    p.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    p.add_argument("--batch", type=int, default=8, help="windows per optimiser step")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=150, help="steps between held-out reports")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curriculum", default="2,4,8", help="shorter windows first (samples), each for "
                   "--curriculum-share of the time budget, then the runtime's window; '' for none")
    p.add_argument("--curriculum-share", type=float, default=0.12)
    p.add_argument("--grey", type=float, default=0.25, help="share of windows shown in grey levels")
    p.add_argument("--recolour", type=float, default=0.0, help="share of windows recoloured (hue turned, saturation "
                   "0-1.2 and brightness 0.8-1.6 times): kind must then be told by shape")
    p.add_argument("--end-loss", type=float, default=0.1, help="weight of the loss over the whole vocabulary on the "
                   "answer word and the end of the turn after it (what generated text reads)")
    p.add_argument("--kind-from-shape", action="store_true", help="ask kind and position (and train the kind "
                   "targets) only in grey or recoloured windows: in natural colours each kind comes in a few colours "
                   "only, and the model learns colour as evidence against a kind (a green ball is no ball)")
    p.add_argument("--type-balance", action="store_true", help="every question type asked in a window weighs alike in "
                   "the answer loss (without: every question does, so the four colour questions outweigh 'fall')")
    p.add_argument("--type-weight", type=type_factors, default=None, metavar="TYPE=W,...", help="a factor on the "
                   "answer loss of the named question types, e.g. fall=3,touch=2 for the types the model answers worst")
    p.add_argument("--pos-weight-cap", type=float, default=6.0, help="a positive answer weighs its type's "
                   "negatives / positives, at most this (positive_weights; 1: no class balance)")
    p.add_argument("--focal", type=float, default=0.0, help="focal exponent of the answer loss (answer_loss): "
                   "answers already right with confidence weigh (1 - p)^FOCAL of their loss, so the hard windows "
                   "(a fall and its get-up, objects in contact from the start) keep the pull; 0: plain")
    p.add_argument("--pruned", type=float, default=0.6, help="share of windows shown as the codec plan prunes them "
                   "(see --dropped); 0: every window at full compute")
    p.add_argument("--dropped", type=float, default=0.5, help="share of the pruned windows whose unchanged tokens are "
                   "left out (the runtime's default style), the rest show them cached")
    p.add_argument("--reverse", type=float, default=0.0, help="share of the windows shown backwards in time, every "
                   "answer that of the reversed samples (reversed_example: a fall reads as a get-up, a meeting as a "
                   "parting), so that the event questions are learnt from the order of the frames; such a window is "
                   "shown unpruned (the codec's plan runs forwards); default 0")
    p.add_argument("--edges", type=float, default=0.0, help="share of the windows drawn from those whose answer to "
                   "an --edge-types question is decided at the window's edges, or a touch near miss (edge_windows)")
    p.add_argument("--edge-types", default="touch,fall", help="question types --edges looks at, comma-separated")
    p.add_argument("--edge-balance", action="store_true", help="--edges draws each --edge-types answer (Yes, No) "
                   "alike (by_answer), not the windows as they come")
    p.add_argument("--aux", type=float, default=1.0, help="weight of the per-token targets (0: answers only)")
    p.add_argument("--contact-target", action="store_true", help="train the per-token target \"touching\" too "
                   "(targets.object_contact: the object under a token is in contact with another, by the touch rule), "
                   "on the ViT's output and the LLM's middle state, as \"fallen\" is for fall")
    p.add_argument("--events", type=float, default=0.0, help="weight of the per-token event targets on the LLM's "
                   "middle state (targets.event_targets: has the object under a token entered, stopped, touched or "
                   "fallen since the window began); 0: none")
    p.add_argument("--place", type=float, default=0.0, help="weight of the per-token place targets (column and "
                   "row of each visual token, so that it carries where it is) on the LLM's middle state; 0: none")
    p.add_argument("--text-layers", type=int, default=None, help="LLM depth (default: --init's, else the bundled "
                   "config's); with --init of a shallower model, its layers are spread over the deeper one "
                   "(reference.model.grow)")
    p.add_argument("--vision-layers", type=int, default=None, help="ViT depth (default: --init's, else the bundled "
                   "config's); with --init of a shallower model, its blocks are spread over the deeper one and the "
                   "added blocks attend over the whole frame (reference.model.build, grow)")
    p.add_argument("--text-mlp", type=int, default=None, help="the LLM's MLP width (intermediate size; default: "
                   "--init's, else the bundled config's); wider than --init's, its trained units come first and the "
                   "added ones start with zero output weights (reference.model.grow)")
    p.add_argument("--vision-mlp", type=int, default=None, help="the ViT's MLP width, as --text-mlp")
    p.add_argument("--text-hidden", type=int, default=None, help="the LLM's hidden width, whole 12-dim heads "
                   "(default: --init's, else the bundled config's 48); wider than --init's, the added dimensions "
                   "start at zero in every token (reference.model.grow); 60 keeps the weights under 20 MB")
    p.add_argument("--vision-hidden", type=int, default=None, help="the ViT's hidden width, whole 16-dim heads "
                   "(default: --init's, else the bundled config's 64); wider than --init's, the added dimensions "
                   "start at zero in every patch (reference.model.grow)")
    p.add_argument("--spatial-rope", type=float_pair, default=None, metavar="ROW,COLUMN",
                   help="radians per token row and column for one height and one width frequency pair of the LLM's "
                   "rotary (reference.model.spatial_rope; default: --init's rotary, else the bundled config's); the "
                   "weights are kept")
    p.add_argument("--contrast", type=float_pair, default=None, metavar="LOW,HIGH",
                   help="in windows not asked about colour (grey, recoloured, anycolour), stretch the frames' "
                   "contrast by a factor drawn from [LOW, HIGH] (stretch_contrast; default: none)")
    p.add_argument("--object-colour", type=float, default=0.0, help="share of the windows not asked about colour "
                   "in which every object gets a colour of its own, never near a held-out pair's for its kind "
                   "(recolour_objects; default 0)")
    p.add_argument("--input-size", type=size_hw, default=None, metavar="HxW",
                   help="model input size in px, whole 28 px tokens (default: --init's, else "
                        f"{INPUT_HW[0]}x{INPUT_HW[1]}); saved in the config, which the runtime reads")
    p.add_argument("--init", default=None, help="start from these weights (e.g. the bundled model) instead of a "
                   "fresh initialisation; --out's checkpoint, if any, still takes precedence")
    args = p.parse_args(argv)
    if not (0 <= args.grey and 0 <= args.recolour and args.grey + args.recolour <= 1):
        p.error(f"--grey and --recolour are shares of the windows: each >= 0, together <= 1 "
                f"(got {args.grey} and {args.recolour})")
    if args.kind_from_shape and args.grey + args.recolour == 0:
        p.error("--kind-from-shape needs grey or recoloured windows (--grey, --recolour): only they are asked "
                "about kind")
    if args.end_loss < 0:
        p.error(f"--end-loss is a loss weight, >= 0 (got {args.end_loss})")
    if args.place < 0:
        p.error(f"--place is a loss weight, >= 0 (got {args.place})")
    if args.events < 0:
        p.error(f"--events is a loss weight, >= 0 (got {args.events})")
    if not 1 <= args.pos_weight_cap <= 100:
        p.error(f"--pos-weight-cap is a loss weight within [1, 100] (got {args.pos_weight_cap})")
    if not 0 <= args.focal <= 10:
        p.error(f"--focal is a focal-loss exponent within [0, 10] (got {args.focal})")
    rope = None
    if args.spatial_rope:
        try:
            rope = spatial_rope(*args.spatial_rope)
        except ValueError as e:
            p.error(f"--spatial-rope takes ROW,COLUMN radians per token, each within (0, pi]: {e}")
    if args.contrast and not 0 < args.contrast[0] <= args.contrast[1] <= 10:
        p.error(f"--contrast takes LOW,HIGH contrast factors with 0 < LOW <= HIGH <= 10 (got {args.contrast})")
    edge_types = tuple(t for t in args.edge_types.split(",") if t)
    if unknown := set(edge_types) - set(QUESTION_TYPES):
        p.error(f"--edge-types: unknown question type(s) {sorted(unknown)}; known: {', '.join(QUESTION_TYPES)}")
    if args.edge_balance and not args.edges:
        p.error("--edge-balance balances the windows --edges draws: give --edges S (S > 0) too")
    for name in ("pruned", "dropped", "object_colour", "reverse", "edges"):
        if not 0 <= getattr(args, name) <= 1:
            p.error(f"--{name.replace('_', '-')} is a share of the windows, within [0, 1] (got {getattr(args, name)})")
    if args.input_size and (QWEN2_5_VL.snap(*args.input_size) != args.input_size
                            or not 56 <= min(args.input_size) <= max(args.input_size) <= 1344):
        p.error(f"--input-size takes HxW in px, each a multiple of {QWEN2_5_VL.token_px} within 56..1344 (whole "
                f"tokens), got {args.input_size}")
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.pt")
    random.seed(args.seed)

    try:
        adapter = initial_model(args.seed, args.text_layers, rope, args.init, args.input_size, args.vision_layers,
                                args.text_mlp, args.vision_mlp, args.text_hidden, args.vision_hidden)
    except ValueError as e:  # a size out of range, or smaller than --init's
        p.error(f"--text-layers / --vision-layers / --text-mlp / --vision-mlp / --text-hidden / --vision-hidden: {e}")
    adapter.model.train()
    # training-only heads reading the per-token targets off the vision output and the LLM's middle state
    width = adapter.model.config.text_config.hidden_size
    aux = torch.nn.ModuleDict({k: torch.nn.Linear(width, len(CLASSES)) for k in ("vision", "hidden")})
    aux["events"] = torch.nn.Linear(width, len(EVENTS))
    size = adapter.default_input_hw()
    grid = adapter.geometry.grid(*size)  # token rows, columns
    aux["place"] = torch.nn.Linear(width, sum(grid))  # column and row of a visual token (--place)
    opt = torch.optim.AdamW([*adapter.model.parameters(), *aux.parameters()], lr=args.lr, weight_decay=0.01,
                            fused=True)  # one pass over the 7.3 M-entry embedding table, not a dozen
    step, spent, best = 0, 0.0, -1.0
    if os.path.exists(ckpt):
        state = torch.load(ckpt, weights_only=False)
        adapter.model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        # checkpoints from before a head or a target class existed resume too (such a head starts afresh)
        own = aux.state_dict()
        aux.load_state_dict({k: v for k, v in state["aux"].items() if k in own and own[k].shape == v.shape},
                            strict=False)
        step, spent, best = state["step"], state["spent"], state["best"]
        random.setstate(state["random"])
        print(f"resumed at step {step} ({spent / 60:.1f} min spent)", file=sys.stderr)

    print("decoding streams ...", file=sys.stderr, flush=True)
    print(f"input size {size[0]}x{size[1]} ({grid[0]} x {grid[1]} tokens)", file=sys.stderr)
    train = {k: v for d in args.data for k, v in load_streams(d, adapter.geometry, size).items()}
    heldout = load_streams(args.heldout, adapter.geometry, size)
    examples = [ex for d in args.data for ex in load_examples(d, RUNTIME["fps"])]
    stages = [(int(n), [ex for d in args.data for ex in short_examples(d, int(n))])
              for n in args.curriculum.split(",") if n]
    probe = load_examples(args.heldout, RUNTIME["fps"])
    probe = random.Random(1).sample(probe, min(120, len(probe)))
    system_ids = adapter.chat_system(SYSTEM_PROMPT)
    question_ids = {q: adapter.chat_question(q) for ex in examples + probe for q in ex.questions}
    counts: dict[str, list[int]] = {}
    for ex in examples:
        for a, t in zip(ex.answers, ex.types):
            if not (t == "colour" and train[ex.stream].any_colour):
                counts.setdefault(t, [0, 0])[a] += 1
    pos_weight = positive_weights(counts, args.pos_weight_cap)
    print(f"{len(examples)} training windows, positive weights {pos_weight}, type factors {args.type_weight or {}}",
          file=sys.stderr, flush=True)
    edges = edge_windows(examples, train, edge_types) if args.edges else []
    groups = by_answer(edges, edge_types) if args.edge_balance else [edges]
    if args.edges:
        if not edges:
            p.error(f"--edges: no training window is decided at its edges for {', '.join(edge_types)}")
        print(f"{len(edges)} windows decided at their edges ({', '.join(edge_types)}), drawn in {args.edges:.0%} "
              f"of the runtime-length windows", file=sys.stderr, flush=True)

    def checkpoint():
        torch.save({"model": adapter.model.state_dict(), "opt": opt.state_dict(), "aux": aux.state_dict(),
                    "step": step, "spent": time.time() - t_start, "best": best, "random": random.getstate()}, ckpt)

    yes, no = adapter.yes_no_ids()
    stop = min(adapter.stop_ids())
    vocabulary = adapter.tokenizer.get_vocab().values()  # every id a training step reads (a word-level tokenizer)
    log = open(os.path.join(args.out, "train.log"), "a")
    t_start, t_ckpt = time.time() - spent, time.time()
    budget = args.minutes * 60
    losses = []
    while time.time() - t_start < budget:
        frac = (time.time() - t_start) / budget
        for g in opt.param_groups:  # warm-up, then cosine over the time budget
            g["lr"] = args.lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))
        opt.zero_grad()
        answer_sum = 0.0
        stage = int(frac / args.curriculum_share) if args.curriculum_share > 0 else len(stages)
        pool = stages[stage][1] if stage < len(stages) else examples
        total, scored = 0.0, []  # scored: (final states, target ids, weights) for the whole-vocabulary loss
        with step_vocabulary(adapter, vocabulary):
            picks = random.sample(pool, args.batch)
            if edges and pool is examples:  # drawn only when asked for, so that runs without it draw as before
                picks = [random.choice(random.choice(groups)) if random.random() < args.edges else ex for ex in picks]
            for ex in picks:
                stream = train[ex.stream]
                # Every training person has one of a few colours, so colour is a shortcut to kind that fails on the
                # held-out combinations (a blue person): in some windows the colour is taken away or changed, and
                # with it the colour questions and targets, so that kind is learned from shape.
                tint = draw_tint(random, args.grey, args.recolour)
                blind = tint is not None or stream.any_colour
                # drawn only when asked for, so that runs without it draw what they drew before
                contrast = random.uniform(*args.contrast) if args.contrast and blind else 1.0
                object_colours = (np.random.default_rng(random.getrandbits(64)) if args.object_colour and blind
                                  and random.random() < args.object_colour else None)
                pruning = random.choices(PRUNING, (1 - args.pruned, args.pruned * (1 - args.dropped),
                                                    args.pruned * args.dropped))[0]
                if args.reverse and random.random() < args.reverse:  # drawn only when asked for (as above)
                    ex, pruning = reversed_example(stream.track, ex), "none"
                if pruning == "dropped" and ex.length < RUNTIME["window"]:
                    # a dropped window holds what does not move only if the plan's periodic full encoding falls
                    # inside it, which the runtime's window guarantees and a short one does not
                    pruning = "cached"
                fwd = window_forward(adapter, stream, ex, pruning, system_ids, question_ids, ex.answers, tint,
                                     contrast, object_colours)
                weight = answer_weights(ex.types, ex.answers, pos_weight, blind, args.kind_from_shape,
                                        args.type_balance, args.type_weight)
                loss = answer_loss(fwd.yes_no, ex.answers, weight, args.focal)
                answer_sum += loss.item() / args.batch
                # the answer word and then the end of the turn over the whole vocabulary, so that generated text
                # reads "Yes"/"No" and stops; weak, so that the yes/no decision drives learning from the first step
                said = [i for i, w in enumerate(weight.tolist()) if w > 0]
                words = [yes if a else no for a in ex.answers]
                for rows, states, ids in ((said, fwd.answer, words), (range(len(words)), fwd.end, [stop] * len(words))):
                    pick = random.sample(list(rows), min(VOCABULARY_ROWS, len(rows)))
                    scored.append((states[pick], [ids[i] for i in pick], [args.end_loss / len(pick)] * len(pick)))
                if args.aux:
                    first = ex.first // adapter.geometry.temporal
                    tokens = stream.targets[first:first + len(fwd.vision)]
                    tokens = (tokens.flip(0) if ex.backward else tokens).flatten(0, 1)
                    seen = target_mask(blind, args.kind_from_shape, args.contact_target)
                    for name, h, rows in (("vision", fwd.vision.flatten(0, 1), slice(None)),
                                          ("hidden", fwd.hidden, fwd.kept)):
                        loss = loss + args.aux * F.binary_cross_entropy_with_logits(
                            aux[name](h), tokens[rows], weight=seen, pos_weight=torch.tensor(4.0))
                if args.events and not ex.backward:  # the event targets are made for forward time
                    events = torch.from_numpy(event_targets(stream.track, ex.first, ex.length,
                                                            adapter.geometry.temporal)).flatten(0, 1)[fwd.kept]
                    loss = loss + args.events * F.binary_cross_entropy_with_logits(
                        aux["events"](fwd.hidden), events, pos_weight=torch.tensor(4.0))
                if args.place:
                    # (row, col) of each token the LLM saw: the vision tower's rotary is relative, so a token does
                    # not know where in the frame it is unless the LLM writes it in from its own rotary
                    where = Segment.full_coords(*grid).repeat(len(fwd.vision), 1)[fwd.kept]
                    logits = aux["place"](fwd.hidden)
                    loss = loss + args.place * (F.cross_entropy(logits[:, :grid[1]], where[:, 1])
                                                + F.cross_entropy(logits[:, grid[1]:], where[:, 0]))
                total = total + loss
            states, ids, w = (torch.cat([x[0] for x in scored]), [i for x in scored for i in x[1]],
                              torch.tensor([v for x in scored for v in x[2]]))
            logits = states @ adapter.model.lm_head.weight.T  # one product with the whole table per step
            total = total + (F.cross_entropy(logits, torch.tensor(ids), reduction="none") * w).sum()
            (total / args.batch).backward()
        loss_sum = total.item() / args.batch
        torch.nn.utils.clip_grad_norm_([*adapter.model.parameters(), *aux.parameters()], 1.0)
        opt.step()
        step += 1
        losses.append((loss_sum, answer_sum))
        if step % 25 == 0:
            total, answer = np.mean(losses[-25:], axis=0)
            msg = f"step {step} window {pool[0].length} loss {total:.4f} (answers {answer:.4f}) " \
                  f"lr {opt.param_groups[0]['lr']:.2e} " \
                  f"{(time.time() - t_start) / 60:.1f} min"
            print(msg, file=sys.stderr, flush=True)
            log.write(msg + "\n")
            log.flush()
        if step % args.eval_every == 0:
            report = evaluate(adapter, heldout, probe, system_ids, question_ids)
            # balanced accuracy picks the best weights: F1 rewards answering "Yes" to everything (0.78 on "enter")
            score = float(np.mean([v["balanced_acc"] for v in report.values()]))
            msg = f"step {step} held-out mean balanced accuracy {score:.3f} {json.dumps(report)}"
            print(msg, file=sys.stderr, flush=True)
            log.write(msg + "\n")
            log.flush()
            if score > best:
                best = score
                torch.save(adapter.model.state_dict(), os.path.join(args.out, "best.pt"))
        if time.time() - t_ckpt > 180:
            checkpoint()
            t_ckpt = time.time()
    checkpoint()
    best_path = os.path.join(args.out, "best.pt")
    kept = "the last step"
    if args.keep == "best" and os.path.exists(best_path):
        adapter.model.load_state_dict(torch.load(best_path))
        kept = "the probe's best step"
    save(adapter, args.save)
    print(f"done: {step} steps in {(time.time() - t_start) / 60:.1f} min, best held-out mean balanced accuracy "
          f"{best:.3f}; saved {kept}", file=sys.stderr)
    return 0


def save(adapter, folder: str | None):
    """save_pretrained in float16 (the weights file stays under 20 MB); loads back with load_adapter."""
    from codecsight.models.base import BUNDLED_MODEL

    folder = folder or BUNDLED_MODEL
    buffers = {n: b.clone() for n, b in adapter.model.named_buffers()}  # rotary frequencies: not saved, kept exact
    adapter.model.half().save_pretrained(folder)
    adapter.tokenizer.save_pretrained(folder)
    adapter.model.float()
    with torch.no_grad():
        for n, b in adapter.model.named_buffers():
            b.copy_(buffers[n])
    assert load_adapter(folder).family == "qwen2_5_vl"
    print(f"saved {folder} ({os.path.getsize(os.path.join(folder, 'model.safetensors')) / 1e6:.1f} MB)",
          file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
