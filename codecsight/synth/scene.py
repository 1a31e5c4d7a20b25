"""The world model of a synthetic surveillance stream: a static camera over a textured, noisy background, and
objects of a few kinds and colours that enter, move, stop, meet (touch), fall and leave.

Everything is a pure function of a seed: `make_scene(rng, split, duration)` draws the style and a timeline of
episodes; each object is a list of keyframes (time, anchor x, anchor y, tilt) interpolated linearly, so its
state at any instant is exact and the labels (labels.py) are computed from the same state the renderer draws.
Coordinates are native pixels; the anchor is the bottom centre of the upright object, y grows downwards, and
a tilt of +-90 degrees is an object lying on its side (fallen), pivoting about the anchor.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from PIL import Image

# Colours the questions ask about, and distractors they never name.
COLOURS = {
    "red": (205, 40, 35), "green": (40, 165, 55), "blue": (40, 75, 215), "yellow": (235, 205, 35),
    "white": (235, 235, 230), "purple": (140, 55, 175),
}
QUESTION_COLOURS = ("red", "green", "blue", "yellow")
KINDS = ("person", "box", "ball", "car")
# Upright (width, height) as multiples of the object's scale in px.
SHAPE = {"person": (0.36, 1.0), "box": (0.62, 1.0), "ball": (0.55, 0.55), "car": (2.0, 0.75)}
SPEED = {"person": (25, 50), "box": (20, 40), "ball": (40, 90), "car": (50, 100)}  # px/s at native size
CAN_FALL = ("person", "box")  # a tipped ball looks the same and cars do not tip
LIE = (3.0, 10.0)  # seconds a fallen object lies before it gets up (synth --lie)
NEAR_GAP = (8.0, 20.0)  # px between the boxes where a near-meet stops (synth --near); labels call >= 5 px apart

# The held-out split: colour-kind combinations, background textures and palettes training never sees.
HELDOUT_COMBOS = {("red", "car"), ("blue", "person"), ("green", "ball"), ("yellow", "box"), ("white", "person")}
TEXTURES = {"train": ("blobs", "tiles", "stripes"), "heldout": ("wall",)}
PALETTES = {
    "train": ((128, 122, 112), (110, 116, 120), (150, 140, 120), (100, 104, 92)),
    "heldout": ((92, 100, 118), (120, 96, 84)),
}
# Split `anycolour`: training's settings, but every object in an arbitrary colour ("#rrggbb"), so that a kind is
# seen in many colours, not the three to five named ones; none within UNSEEN_RADIUS (RGB distance) of a held-out
# combination's colour for its kind, so that the held-out split still shows those pairs first.
TEXTURES["anycolour"], PALETTES["anycolour"] = TEXTURES["train"], PALETTES["train"]
UNSEEN_RADIUS = 90.0


def heldout_colours(kind: str) -> list[str]:
    """The named colours held out for `kind`, in a fixed order (a set's order varies by process)."""
    return [c for c, k in sorted(HELDOUT_COMBOS) if k == kind]


def training_colours(kind: str) -> list[str]:
    """The named colours training shows `kind` in, in COLOURS' order."""
    return [c for c in COLOURS if (c, kind) not in HELDOUT_COMBOS]


def colour_rgb(colour: str) -> tuple[int, int, int]:
    """A colour name of COLOURS, or "#rrggbb" (split `anycolour`), as RGB."""
    if colour.startswith("#"):
        return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return COLOURS[colour]


@dataclass
class Style:
    """Camera and background settings of one stream."""

    width: int
    height: int
    fps: int
    texture: str
    palette: tuple[int, int, int]
    noise: float  # sensor noise sigma, grey levels
    drift: float  # relative amplitude of the slow illumination drift
    drift_period: float  # s
    shake: float  # camera shake amplitude in px (0: none)


@dataclass
class Obj:
    id: int
    kind: str
    colour: str
    scale: float  # px: the height of a unit shape
    keys: list[tuple[float, float, float, float]] = field(default_factory=list)  # (t, x, y, tilt degrees)

    @property
    def t0(self) -> float:
        return self.keys[0][0]

    @property
    def t1(self) -> float:
        return self.keys[-1][0]

    def state(self, t: float) -> tuple[float, float, float] | None:
        """(x, y, tilt) at time t, or None before the object's first or after its last keyframe."""
        if not self.keys or t < self.t0 or t > self.t1:
            return None
        k = np.array(self.keys)
        return tuple(float(np.interp(t, k[:, 0], k[:, i])) for i in (1, 2, 3))

    def size(self) -> tuple[float, float]:
        w, h = SHAPE[self.kind]
        return w * self.scale, h * self.scale

    def bbox(self, x: float, y: float, tilt: float) -> tuple[float, float, float, float]:
        """Axis-aligned box (x0, y0, x1, y1) of the object tilted about its anchor."""
        w, h = self.size()
        corners = np.array([[-w / 2, 0], [w / 2, 0], [-w / 2, h], [w / 2, h]])
        dx, dy = _rotate(corners[:, 0], corners[:, 1], tilt)
        return x + dx.min(), y - dy.max(), x + dx.max(), y - dy.min()


@dataclass
class Scene:
    style: Style
    duration: float
    objects: list[Obj]

    def to_json(self) -> dict:
        return {"style": asdict(self.style), "duration": self.duration,
                "objects": [asdict(o) for o in self.objects]}


def _rotate(u, v, tilt):
    """Object-local (u right, v up) -> image offsets (dx right, dy up) for a tilt in degrees (positive: tips right)."""
    a = math.radians(tilt)
    return u * math.cos(a) + v * math.sin(a), -u * math.sin(a) + v * math.cos(a)


# ---- timeline --------------------------------------------------------------------------------------------------

def make_scene(rng: np.random.Generator, split: str, duration: float, width: int = 320, height: int = 240,
               stumble: float = 0.0, lie: tuple[float, float] = LIE, near: float = 0.0) -> Scene:
    """`stumble`: share of episodes that are near-falls (hard negatives for "fall"); at 0 no draw is spent on it,
    so every seed's scene stays what it was before the option existed. `near`: the same for near-meets (two
    objects stop NEAR_GAP apart: hard negatives for "touch"), drawn among the episodes that are not near-falls.
    `lie`: the range of seconds a fallen object lies before it gets up (the same one draw at any range, so the
    default keeps every seed's scene)."""
    style = Style(
        width=width, height=height, fps=int(rng.choice([10, 12, 15, 20, 25, 30])),
        texture=str(rng.choice(TEXTURES[split])),
        palette=tuple(int(c) for c in PALETTES[split][rng.integers(len(PALETTES[split]))]),
        noise=float(rng.uniform(1.5, 5.0)), drift=float(rng.uniform(0.02, 0.12)),
        drift_period=float(rng.uniform(30, 120)), shake=float(rng.choice([0.0, 0.0, 1.0, 1.5])),
    )
    episodes = {**EPISODES, "fall": functools.partial(_fall, lie=lie)}
    objects: list[Obj] = []
    t = float(rng.uniform(0.5, 4.0))
    while t < duration - 2:
        alive = sum(1 for o in objects if o.t0 <= t <= o.t1)
        if alive < 4:
            if stumble > 0 and rng.random() < stumble:
                episode = "stumble"
            elif near > 0 and rng.random() < near:
                episode = "near"
            else:
                episode = rng.choice(["cross", "visit", "meet", "fall"], p=[0.3, 0.2, 0.25, 0.25])
            objects += episodes[episode](rng, split, style, t, len(objects))
        t += float(rng.exponential(7.0)) + 1.0
    return Scene(style, duration, objects)


def free_colour(rng: np.random.Generator, kind: str) -> str:
    """An arbitrary "#rrggbb" colour for an object of `kind`, never within UNSEEN_RADIUS of a held-out pair's colour
    for that kind (split `anycolour`, and training's per-object recolouring)."""
    near = [np.array(COLOURS[c]) for c in heldout_colours(kind)]
    while True:
        rgb = rng.integers(15, 251, size=3)
        if all(np.linalg.norm(rgb - c) >= UNSEEN_RADIUS for c in near):
            return "#" + "".join(f"{int(c):02x}" for c in rgb)


def seen_twin(scene: Scene) -> Scene:
    """The scene with every object of a held-out colour-kind pair in the training colour of its kind nearest in RGB
    (white person -> yellow, blue person -> purple, yellow box -> red, red car -> purple, green ball -> blue); all
    else is the same. Streams rendered from both differ only there, so an answer that changes between them was
    changed by the unseen pairing of colour and kind, not by the motion, the crowd or the background."""
    def twin(o: Obj) -> Obj:
        if (o.colour, o.kind) not in HELDOUT_COMBOS:
            return o
        rgb = COLOURS[o.colour]
        nearest = min(training_colours(o.kind), key=lambda c: np.linalg.norm(np.subtract(COLOURS[c], rgb)))
        return replace(o, colour=nearest)
    return replace(scene, objects=[twin(o) for o in scene.objects])


def _new_object(rng, split, style, oid, kinds=KINDS) -> Obj:
    kind = str(rng.choice(kinds))
    if split == "anycolour":
        colour = free_colour(rng, kind)
    elif split == "heldout" and rng.random() < 0.5:  # make the unseen combinations common
        unseen = heldout_colours(kind)
        colour = str(rng.choice(unseen)) if unseen else str(rng.choice(list(COLOURS)))
    else:
        colour = str(rng.choice(list(COLOURS) if split == "heldout" else training_colours(kind)))
    return Obj(oid, kind, colour, scale=float(rng.uniform(0.17, 0.26) * style.height))


def _lane(rng, style) -> float:
    return float(rng.uniform(0.45, 0.97) * style.height)


def _walk(keys, x_to, speed, pause=0.0):
    """Append a straight move of the anchor to x_to at `speed`, then an optional pause."""
    t, x, y, tilt = keys[-1]
    t += abs(x_to - x) / speed
    keys.append((t, x_to, y, tilt))
    if pause > 0:
        keys.append((t + pause, x_to, y, tilt))


def _entry(rng, style, obj, side) -> tuple[float, float]:
    """Anchor x just outside the frame on `side` (-1 left, +1 right), and the x just outside the other side."""
    w = obj.size()[0]
    off_left, off_right = -w / 2 - 2, style.width + w / 2 + 2
    return (off_left, off_right) if side < 0 else (off_right, off_left)


def _arrive(rng, split, style, t, oid, kinds=KINDS):
    """A new object just outside the frame at time t: (object, entry x, far-side x, speed)."""
    o = _new_object(rng, split, style, oid, kinds)
    side = int(rng.choice([-1, 1]))
    x0, x1 = _entry(rng, style, o, side)
    speed = float(rng.uniform(*SPEED[o.kind]))
    o.keys = [(t, x0, _lane(rng, style), 0.0)]
    return o, x0, x1, speed


def _cross(rng, split, style, t, oid):
    o, x0, x1, speed = _arrive(rng, split, style, t, oid)
    if rng.random() < 0.5:  # stop somewhere on the way
        _walk(o.keys, float(rng.uniform(0.2, 0.8) * style.width), speed, pause=float(rng.uniform(2, 8)))
    _walk(o.keys, x1, speed)
    return [o]


def _visit(rng, split, style, t, oid):
    o, x0, x1, speed = _arrive(rng, split, style, t, oid)
    _walk(o.keys, float(rng.uniform(0.15, 0.85) * style.width), speed, pause=float(rng.uniform(6, 25)))
    _walk(o.keys, x0 if rng.random() < 0.5 else x1, speed)
    return [o]


def _meet(rng, split, style, t, oid, gap=None):
    """Two objects come from opposite sides along one lane, stop touching each other (or, given a `gap` range in
    px, that far apart: a near-meet), then go back."""
    a, b = _new_object(rng, split, style, oid), _new_object(rng, split, style, oid + 1)
    y = _lane(rng, style)
    xm = float(rng.uniform(0.3, 0.7) * style.width)
    (wa, _), (wb, _) = a.size(), b.size()
    half = 0.5 if gap is None else float(rng.uniform(*gap)) / 2  # 0.5: the boxes stop 1 px apart (contact)
    xa, xb = xm - wa / 2 - half, xm + wb / 2 + half  # anchors where they stop
    a0, _ = _entry(rng, style, a, -1)
    b0, _ = _entry(rng, style, b, +1)
    sa, sb = float(rng.uniform(*SPEED[a.kind])), float(rng.uniform(*SPEED[b.kind]))
    arrive = t + max(abs(xa - a0) / sa, abs(xb - b0) / sb)
    stay = float(rng.uniform(2, 6))
    for o, x0, xt, s in ((a, a0, xa, sa), (b, b0, xb, sb)):
        start = arrive - abs(xt - x0) / s
        o.keys = [(start, x0, y, 0.0), (arrive, xt, y, 0.0), (arrive + stay, xt, y, 0.0)]
        _walk(o.keys, x0, s)
    return [a, b]


def _tip(rng, split, style, t, oid, pose):
    """An object walks in, maybe stops, tips to `pose(rng)` = (tilt, seconds to tip, seconds held), straightens up
    in 1 s and walks out."""
    o, x0, x1, speed = _arrive(rng, split, style, t, oid, kinds=CAN_FALL)
    _walk(o.keys, float(rng.uniform(0.25, 0.75) * style.width), speed,
          pause=float(rng.uniform(0.5, 3.0)) if rng.random() < 0.5 else 0.0)
    tf, x, y, _ = o.keys[-1]
    tilt, tip, hold = pose(rng)
    tf += tip
    o.keys += [(tf, x, y, tilt), (tf + hold, x, y, tilt), (tf + hold + 1.0, x, y, 0.0)]
    _walk(o.keys, x0 if rng.random() < 0.5 else x1, speed)
    return [o]


def _fall_pose(rng, lie=LIE):
    """Lying on its side for `lie` = (shortest, longest) seconds (draws in the order the generator always had)."""
    tilt, held = float(rng.choice([-90.0, 90.0])), float(rng.uniform(*lie))
    return tilt, float(rng.uniform(0.4, 0.8)), held


def _stumble_pose(rng):
    """Leaning 15-35 degrees, never lying, for 0.5-3 s: a fall's start without the fall, so that "fall" is learnt
    from the lying object rather than from the stop before it."""
    tilt = float(rng.choice([-1.0, 1.0]) * rng.uniform(15, 35))
    return tilt, float(rng.uniform(0.4, 0.8)), float(rng.uniform(0.5, 3.0))


def _fall(rng, split, style, t, oid, lie=LIE):
    return _tip(rng, split, style, t, oid, functools.partial(_fall_pose, lie=lie))


def _stumble(rng, split, style, t, oid):
    return _tip(rng, split, style, t, oid, _stumble_pose)


EPISODES = {"cross": _cross, "visit": _visit, "meet": _meet, "fall": _fall, "stumble": _stumble,
            "near": functools.partial(_meet, gap=NEAR_GAP)}


# ---- rendering -------------------------------------------------------------------------------------------------

def _smooth_noise(rng, h, w, cells) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bicubically."""
    coarse = rng.random((max(2, h // cells), max(2, w // cells))).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.BICUBIC))


def make_background(rng: np.random.Generator, style: Style) -> np.ndarray:
    """(H, W, 3) float32 background texture of the stream, before noise and illumination."""
    h, w = style.height, style.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fine = _smooth_noise(rng, h, w, 3) - 0.5
    if style.texture == "blobs":
        tex = 30 * (_smooth_noise(rng, h, w, 40) - 0.5) + 12 * fine
    elif style.texture == "tiles":
        s = int(rng.integers(18, 34))
        tile = rng.random((h // s + 1, w // s + 1)).astype(np.float32)[(yy // s).astype(int), (xx // s).astype(int)]
        grout = ((yy % s) < 2) | ((xx % s) < 2)
        tex = 18 * (tile - 0.5) - 25 * grout + 8 * fine
    elif style.texture == "stripes":
        period = float(rng.uniform(30, 70))
        tex = 14 * np.sin(2 * np.pi * yy / period) + 20 * (_smooth_noise(rng, h, w, 60) - 0.5) + 10 * fine
    elif style.texture == "wall":  # held-out: a brick wall above a horizon, a plain floor below
        horizon = int(h * rng.uniform(0.3, 0.42))
        bh, bw = int(rng.integers(8, 13)), int(rng.integers(20, 32))
        row = (yy // bh).astype(int)
        brick = ((yy % bh) < 1.5) | (((xx + (row % 2) * bw / 2) % bw) < 1.5)
        tex = np.where(yy < horizon, 15 - 35 * brick, -10 + 16 * (_smooth_noise(rng, h, w, 25) - 0.5)) + 8 * fine
    else:
        raise ValueError(f"unknown texture {style.texture!r}")
    tint = np.asarray(style.palette, np.float32)
    return tint[None, None] + tex[..., None] * (0.85 + 0.3 * rng.random(3, dtype=np.float32))[None, None]


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Object mask and a shade factor (1 = body colour) at object-local coordinates (u right, v up, in px)."""
    if kind == "person":
        head = u ** 2 + (v - 0.87 * s) ** 2 < (0.11 * s) ** 2
        torso = (np.abs(u) < 0.17 * s) & (v > 0.36 * s) & (v < 0.77 * s)
        legs = (np.abs(np.abs(u) - 0.08 * s) < 0.055 * s) & (v >= 0) & (v <= 0.37 * s)
        return head | torso | legs, np.where(head, 0.8, 1.0)
    if kind == "box":
        w = 0.31 * s
        inside = (np.abs(u) < w) & (v >= 0) & (v < s)
        edge = (np.abs(u) > w - 2.5) | (v < 2.5) | (v > s - 2.5) | (np.abs(v - s / 2) < 1.2)
        return inside, np.where(edge, 0.6, 1.0)
    if kind == "ball":
        r = 0.275 * s
        d2 = u ** 2 + (v - r) ** 2
        return d2 < r ** 2, 1.15 - 0.35 * np.sqrt(np.clip(d2, 0, None)) / r
    if kind == "car":
        body = (np.abs(u) < s) & (v > 0.12 * s) & (v < 0.45 * s)
        cabin = (np.abs(u + 0.1 * s) < 0.5 * s) & (v >= 0.45 * s) & (v < 0.75 * s)
        wheel = ((np.abs(u) - 0.62 * s) ** 2 + (v - 0.13 * s) ** 2) < (0.13 * s) ** 2
        window = (np.abs(u + 0.1 * s) < 0.4 * s) & (v >= 0.5 * s) & (v < 0.7 * s)
        return body | cabin | wheel, np.where(wheel, 0.15, np.where(window, 0.55, 1.0))
    raise ValueError(f"unknown kind {kind!r}")


class Renderer:
    """Draws frame n of a scene. Sensor noise comes from a fixed bank of noise frames picked per frame, which is
    as good as fresh noise for the codec and several times cheaper."""

    def __init__(self, scene: Scene, rng: np.random.Generator):
        self.scene = scene
        st = scene.style
        self.background = make_background(rng, st)
        self.noise = [rng.normal(0, st.noise, (st.height, st.width, 3)).astype(np.float32) for _ in range(16)]
        self.noise_pick = rng.integers(0, len(self.noise), size=int(scene.duration * st.fps) + 2)
        self.phase = float(rng.uniform(0, 2 * np.pi))
        self.shake_seed = rng.normal(size=(int(scene.duration) + 2, 2))
        self.tone = {o.id: rng.uniform(-12, 12, size=3) for o in scene.objects}  # per-object colour jitter

    def frame(self, n: int) -> np.ndarray:
        st = self.scene.style
        t = n / st.fps
        img = self.background.copy()
        for _, o, (x, y, tilt) in drawing_order(self.scene, t):
            self._draw(img, o, x, y, tilt)
        img *= 1 + st.drift * math.sin(2 * math.pi * t / st.drift_period + self.phase)
        img += self.noise[self.noise_pick[n]]
        if st.shake:
            i = int(t)
            a, f = self.shake_seed[i], t - i
            dx, dy = np.round(st.shake * ((1 - f) * a + f * self.shake_seed[i + 1])).astype(int)
            img = np.roll(img, (int(dy), int(dx)), axis=(0, 1))
        return np.clip(img, 0, 255).astype(np.uint8)

    def _draw(self, img, o: Obj, x, y, tilt):
        drawn = object_pixels(o, x, y, tilt, self.scene.style)
        if drawn is None:
            return
        rows, cols, mask, shade = drawn
        colour = np.asarray(colour_rgb(o.colour), np.float32) + self.tone[o.id]
        patch = img[rows, cols]
        patch[mask] = (shade[..., None] * colour)[mask]


def drawing_order(scene: Scene, t: float) -> list[tuple[int, Obj, tuple[float, float, float]]]:
    """(index, object, (x, y, tilt)) of the objects in view at time t, far (small y) first: the renderer draws them
    in this order, so nearer objects cover farther ones."""
    live = [(i, o, s) for i, o in enumerate(scene.objects) if (s := o.state(t)) is not None]
    return sorted(live, key=lambda p: p[2][1])


def object_pixels(o: Obj, x: float, y: float, tilt: float, style: Style):
    """Where object `o` at (x, y, tilt) covers the frame: (row slice, column slice, mask, shade) over its box
    clipped to the frame, or None when it lies outside."""
    x0, y0, x1, y1 = o.bbox(x, y, tilt)
    c0, r0 = max(0, int(x0) - 1), max(0, int(y0) - 1)
    c1, r1 = min(style.width, int(x1) + 2), min(style.height, int(y1) + 2)
    if c0 >= c1 or r0 >= r1:
        return None
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dx, dy = xx + 0.5 - x, y - (yy + 0.5)
    a = math.radians(tilt)  # inverse rotation: image offsets -> object-local coordinates
    u, v = dx * math.cos(a) - dy * math.sin(a), dx * math.sin(a) + dy * math.cos(a)
    mask, shade = _shape_mask(o.kind, u, v, o.scale)
    return slice(r0, r1), slice(c0, c1), mask, shade


def object_layers(scene: Scene, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Which object each pixel shows at time t (index into scene.objects, -1: background) and its shade, drawn in
    the renderer's `drawing_order`; without camera shake."""
    st = scene.style
    owner = np.full((st.height, st.width), -1, np.int16)
    shade = np.zeros((st.height, st.width), np.float32)
    for i, o, (x, y, tilt) in drawing_order(scene, t):
        drawn = object_pixels(o, x, y, tilt, st)
        if drawn is not None:
            rows, cols, mask, sh = drawn
            owner[rows, cols][mask] = i
            shade[rows, cols][mask] = sh[mask]
    return owner, shade


def scene_from_json(d: dict) -> Scene:
    objects = [Obj(o["id"], o["kind"], o["colour"], o["scale"], [tuple(k) for k in o["keys"]]) for o in d["objects"]]
    st = dict(d["style"], palette=tuple(d["style"]["palette"]))
    return Scene(Style(**st), d["duration"], objects)
