"""Per-token training targets for the reference model, exact from the scene a stream was rendered from.

A yes/no answer is one bit per question and window, and the object a question is about covers 1-4 of the window's
384 tokens: from that signal alone the small model drifted to the class prior (session 1: visual tokens grew more
alike as training went on). These targets tell every visual token what lies under it (colour, kind, moving,
fallen), so the vision tower learns the features and the language model keeps them where questions can find them.
They are used in training only; the shipped model has no extra head.
"""
from __future__ import annotations

import numpy as np

from codecsight.synth.labels import sample_frames_at
from codecsight.synth.scene import COLOURS, KINDS, Scene

CLASSES = (*COLOURS, *KINDS, "moving", "fallen")


def token_targets(scene: Scene, rate: float, rows: int, cols: int, temporal: int = 2) -> np.ndarray:
    """(temporal patches, rows * cols, len(CLASSES)) float32 in {0, 1}: a class is on for a token when an object
    of it covers at least a third of the token's footprint, or a third of the object lies in it, in any frame of
    the temporal patch. An object in an arbitrary colour (split `anycolour`) sets its kind only: training shows
    such streams without colour targets. Samples sit where `codecsight.signals.sample_frames` puts them."""
    st = scene.style
    frames = sample_frames_at(st.fps, rate, round(scene.duration * st.fps))
    times = np.array(frames) / st.fps
    th, tw = st.height / rows, st.width / cols
    y0s, x0s = np.arange(rows)[:, None] * th, np.arange(cols)[None] * tw
    out = np.zeros((len(times), rows, cols, len(CLASSES)), np.float32)
    for o in scene.objects:
        on = [CLASSES.index(o.kind)] + ([CLASSES.index(o.colour)] if o.colour in COLOURS else [])
        prev = None
        for k, t in enumerate(times):
            s = o.state(float(t))
            if s is None:
                prev = None
                continue
            x0, y0, x1, y1 = o.bbox(*s)
            ix = np.clip(np.minimum(x1, x0s + tw) - np.maximum(x0, x0s), 0, None)
            iy = np.clip(np.minimum(y1, y0s + th) - np.maximum(y0, y0s), 0, None)
            inter = ix * iy
            cover = (inter >= tw * th / 3) | (inter >= (x1 - x0) * (y1 - y0) / 3)
            cls = list(on)
            if prev is not None and np.hypot(s[0] - prev[0], s[1] - prev[1]) > 3.0:
                cls.append(CLASSES.index("moving"))
            if abs(s[2]) >= 60:
                cls.append(CLASSES.index("fallen"))
            out[k][cover] = np.maximum(out[k][cover], np.isin(np.arange(len(CLASSES)), cls))
            prev = s
    if pad := -len(out) % temporal:
        out = np.concatenate([out, np.repeat(out[-1:], pad, axis=0)])
    return out.reshape(-1, temporal, rows * cols, len(CLASSES)).max(axis=1)
