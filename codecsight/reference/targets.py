"""Per-token training targets for the reference model, exact from the scene a stream was rendered from.

A yes/no answer is one bit per question and window, and the object a question is about covers 1-4 of the window's
384 tokens: from that signal alone the small model drifted to the class prior (session 1: visual tokens grew more
alike as training went on). These targets tell every visual token what lies under it (colour, kind, moving,
fallen, in contact with another), so the vision tower learns the features and the language model keeps them where
questions can find them.

Event targets (session 15) do the same for the event questions, which stayed underfit even on training streams:
a token is told whether the object under it has entered, stopped, touched another or fallen since the window
began, by the rules of the labels (`synth.labels`). The language model is causal, so a token of the window's k-th
temporal patch sees the patches before it: "fell" there is the comparison the answer needs (upright earlier,
lying now), made where the object is, and the answer only has to find such a token.
They are used in training only; the shipped model has no extra head.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codecsight.synth.labels import States, object_pairs, sample_frames_at, scene_states
from codecsight.synth.scene import COLOURS, KINDS, Scene

CLASSES = (*COLOURS, *KINDS, "moving", "fallen", "touching")
EVENTS = ("enter", "stop", "touch", "fall")  # "leave" has no token: the object is gone when it has happened


def _sample_times(scene: Scene, rate: float) -> np.ndarray:
    """Seconds of each sample, where `codecsight.signals.sample_frames` puts them."""
    st = scene.style
    return np.array(sample_frames_at(st.fps, rate, round(scene.duration * st.fps))) / st.fps


def object_cover(scene: Scene, times: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(objects, samples, rows, cols) bool: an object covers a token when it covers at least a third of the token's
    footprint, or a third of the object lies in it."""
    th, tw = scene.style.height / rows, scene.style.width / cols
    y0s, x0s = np.arange(rows)[:, None] * th, np.arange(cols)[None] * tw
    out = np.zeros((len(scene.objects), len(times), rows, cols), bool)
    for i, o in enumerate(scene.objects):
        for k, t in enumerate(times):
            if (s := o.state(float(t))) is None:
                continue
            x0, y0, x1, y1 = o.bbox(*s)
            ix = np.clip(np.minimum(x1, x0s + tw) - np.maximum(x0, x0s), 0, None)
            iy = np.clip(np.minimum(y1, y0s + th) - np.maximum(y0, y0s), 0, None)
            out[i, k] = (ix * iy >= tw * th / 3) | (ix * iy >= (x1 - x0) * (y1 - y0) / 3)
    return out


def _by_temporal_patch(x: np.ndarray, temporal: int) -> np.ndarray:
    """(samples, ...) -> (temporal patches, ...): max over each patch's frames; a last odd frame is repeated."""
    if pad := -len(x) % temporal:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    return x.reshape(-1, temporal, *x.shape[1:]).max(axis=1)


def _over_pairs(per_pair: np.ndarray, objects: int) -> np.ndarray:
    """(objects, ...): for each object, the max of a (pairs, ...) array (pairs in `object_pairs` order) over the
    pairs it is in; 0 for an object in none."""
    out = np.zeros((objects, *per_pair.shape[1:]))
    for p, pair in enumerate(object_pairs(objects)):
        for o in pair:
            out[o] = np.maximum(out[o], per_pair[p])
    return out


def object_contact(st: States) -> np.ndarray:
    """(objects, samples) in {0, 0.5, 1}: whether each object is in contact with another, by the labels' touch rule
    (`States.touching`, the max over the pairs it is in; 0.5 where the rule calls the gap borderline)."""
    return _over_pairs(st.touching, len(st.kinds))


def token_targets(scene: Scene, rate: float, rows: int, cols: int, temporal: int = 2,
                  cover: np.ndarray | None = None, states: States | None = None) -> np.ndarray:
    """(temporal patches, rows * cols, len(CLASSES)) float32 in {0, 1} (0.5 for "touching", below): a class is on
    for a token when an object of it covers the token (`object_cover`) in any frame of the temporal patch. An object
    in an arbitrary colour (split `anycolour`) sets its kind only: training shows such streams without colour
    targets. "touching" is `object_contact`, 0.5 where the labels call it borderline (a soft target). cover and
    states: the scene's (objects, samples, rows * cols) `object_cover` and `scene_states` at the samples, where the
    caller has them (`SceneTrack`)."""
    times = _sample_times(scene, rate)
    if cover is None:
        cover = object_cover(scene, times, rows, cols).reshape(len(scene.objects), len(times), rows * cols)
    contact = object_contact(states if states is not None else scene_states(scene, times))
    out = np.zeros((len(times), rows * cols, len(CLASSES)), np.float32)
    for i, o in enumerate(scene.objects):
        on = [CLASSES.index(o.kind)] + ([CLASSES.index(o.colour)] if o.colour in COLOURS else [])
        prev = None
        for k, t in enumerate(times):
            if (s := o.state(float(t))) is None:
                prev = None
                continue
            cls = list(on)
            if prev is not None and np.hypot(s[0] - prev[0], s[1] - prev[1]) > 3.0:
                cls.append(CLASSES.index("moving"))
            if abs(s[2]) >= 60:
                cls.append(CLASSES.index("fallen"))
            on_now = np.isin(np.arange(len(CLASSES)), cls).astype(np.float32)
            on_now[CLASSES.index("touching")] = contact[i, k]
            out[k][cover[i, k]] = np.maximum(out[k][cover[i, k]], on_now)
            prev = s
    return _by_temporal_patch(out, temporal)


@dataclass
class SceneTrack:
    """What the event targets of any window need from a scene, computed once per stream: the labels' per-object
    facts at every sample and which tokens each object covers."""

    states: States
    cover: np.ndarray  # (objects, samples, rows * cols) bool
    pairs: list[tuple[int, int]]  # the object pairs of states.touching, in its order
    scene: Scene
    times: np.ndarray  # (samples,) seconds


def scene_track(scene: Scene, rate: float, rows: int, cols: int) -> SceneTrack:
    times = _sample_times(scene, rate)
    n = len(scene.objects)
    cover = object_cover(scene, times, rows, cols).reshape(n, len(times), rows * cols)
    return SceneTrack(scene_states(scene, times), cover, object_pairs(n), scene, times)


def happened(before: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Kleene 'exists i < j <= k with before[i] and now[j]' for every k, per row (the labels' `_then`, cumulative)."""
    earlier = np.concatenate([np.zeros_like(before[:, :1]), np.maximum.accumulate(before[:, :-1], axis=1)], axis=1)
    return np.maximum.accumulate(np.minimum(earlier, now), axis=1)


def object_events(track: SceneTrack, first: int, n: int) -> np.ndarray:
    """(objects, n, len(EVENTS)) in {0, 0.5, 1}: whether each event has happened to an object between the window's
    first sample and each of its samples, by the rules of the window labels (`synth.labels`); at the window's last
    sample, the max over objects is the window's answer."""
    st, w = track.states, slice(first, first + n)
    out = np.zeros((len(st.kinds), n, len(EVENTS)))
    out[..., EVENTS.index("enter")] = happened(1 - st.visible[:, w], st.visible[:, w])
    out[..., EVENTS.index("fall")] = happened(st.upright[:, w], st.fallen[:, w])
    # stop: a moving interval, then two still ones; complete at the sample that ends the second
    mv, still = st.moving[:, first:first + n - 1], st.still[:, first:first + n - 1]
    if n >= 4:
        done = np.minimum(mv[:, :-2], np.minimum(still[:, 1:-1], still[:, 2:]))
        out[:, 3:, EVENTS.index("stop")] = np.maximum.accumulate(done, axis=1)
    if track.pairs:
        touched = happened(1 - st.touching[:, w], st.touching[:, w])
        out[..., EVENTS.index("touch")] = _over_pairs(touched, len(st.kinds))
    return out


def event_targets(track: SceneTrack, first: int, n: int, temporal: int = 2) -> np.ndarray:
    """(n // temporal, tokens, len(EVENTS)) float32: per token of each temporal patch of the window starting at
    sample `first`, the events that have happened to the objects covering it (`object_events`); 0.5 where the
    labels would call it borderline."""
    ev = object_events(track, first, n)  # (objects, n, E)
    cover = track.cover[:, first:first + n]  # (objects, n, tokens)
    out = (cover[..., None] * ev[:, :, None, :]).max(axis=0, initial=0.0)  # (n, tokens, E)
    return _by_temporal_patch(out, temporal).astype(np.float32)

