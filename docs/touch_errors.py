"""Draws docs/touch-errors.jpg: the model's most confident touch errors on a labelled split, each window's 16
samples cropped around the pair that decides it, with the pair's boxes and their gap.

  codecsight eval --labels out/data/heldout_s2/labels.jsonl --method full --answers A.jsonl
  python docs/touch_errors.py A.jsonl out/data/heldout_s2

A miss is a window labelled Yes with P(Yes) < 0.5 (its pair: the first to go from apart to in contact); a false Yes
one labelled No with P(Yes) >= 0.5 (its pair: the closest after being apart). Frames are decoded from the split's
videos, so they are what the model saw before resizing."""
from __future__ import annotations

import argparse
import json
import os

import av
import numpy as np
from PIL import Image, ImageDraw

from codecsight.reference.targets import happened
from codecsight.synth.labels import object_pairs, sample_frames_at, scene_states
from codecsight.synth.scene import scene_from_json

RATE, WINDOW = 2.0, 16
CROP, SCALE, COLUMNS = (96, 72), 1.5, 8


def decoded(path: str, wanted: list[int]) -> list[np.ndarray]:
    out, last = {}, max(wanted)
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                break
    return [out[i] for i in wanted]


def deciding_pair(states, k0: int, label: str) -> int | None:
    """The pair a window's touch answer turns on: labelled Yes, the first to go from apart to in contact; labelled
    No, the one that comes closest after being apart in the window (else the closest: a pair that only parts)."""
    touching, gap = states.touching[:, k0:k0 + WINDOW], states.gap[:, k0:k0 + WINDOW]
    if not len(touching):  # a scene of one object
        return None
    if label == "Yes":  # the labels' rule, apart then in contact, per sample: the pair to complete it first
        done = happened(1 - touching, touching) == 1
        return int(np.argmin(np.where(done.any(axis=1), done.argmax(axis=1), WINDOW)))
    apart_before = np.zeros(touching.shape, bool)
    apart_before[:, 1:] = np.maximum.accumulate(touching[:, :-1] == 0, axis=1)
    after = np.where(apart_before, gap, np.inf).min(axis=1)
    return int(np.argmin(after if np.isfinite(after).any() else gap.min(axis=1)))


def window_states(data: str, row: dict):
    """The scene of an answers row's video, its sampled frame indices, the labels' facts at them, and the row's
    first sample."""
    scene = scene_from_json(json.load(open(os.path.join(data, f"{row['video']}.json"))))
    fps = scene.style.fps
    samples = sample_frames_at(fps, RATE, round(scene.duration * fps))
    return scene, samples, scene_states(scene, np.array(samples) / fps), int(round(row["start"] * RATE))


def strip(data: str, row: dict, title: str) -> Image.Image:
    scene, samples, states, k0 = window_states(data, row)
    fps = scene.style.fps
    pair = deciding_pair(states, k0, row["answer"])
    objects = [] if pair is None else [scene.objects[i] for i in object_pairs(len(scene.objects))[pair]]
    idx = samples[k0:k0 + WINDOW]
    w, h = int(CROP[0] * SCALE), int(CROP[1] * SCALE)
    rows = -(-len(idx) // COLUMNS)
    out = Image.new("RGB", (COLUMNS * (w + 3), 16 + rows * (h + 3)), (255, 255, 255))
    ImageDraw.Draw(out).text((2, 2), title, fill=(0, 0, 0))
    centre = None
    for k, (n, frame) in enumerate(zip(idx, decoded(os.path.join(data, f"{row['video']}.mp4"), idx))):
        t = n / fps
        boxes = [o.bbox(*s) for o in objects if (s := o.state(t)) is not None]
        if boxes:  # follow whichever of the pair is in view; hold the last view while neither is
            centre = (np.mean([(x0 + x1) / 2 for x0, _, x1, _ in boxes]),
                      np.mean([(y0 + y1) / 2 for _, y0, _, y1 in boxes]))
        cx, cy = centre or (scene.style.width / 2, scene.style.height / 2)
        left = int(np.clip(cx - CROP[0] / 2, 0, scene.style.width - CROP[0]))
        top = int(np.clip(cy - CROP[1] / 2, 0, scene.style.height - CROP[1]))
        im = Image.fromarray(frame[top:top + CROP[1], left:left + CROP[0]]).resize((w, h), Image.NEAREST)
        draw = ImageDraw.Draw(im)
        for x0, y0, x1, y1 in boxes:
            draw.rectangle([(x0 - left) * SCALE, (y0 - top) * SCALE, (x1 - left) * SCALE, (y1 - top) * SCALE],
                           outline=(255, 0, 255))
        gap = states.gap[pair, k0 + k] if pair is not None else 1e9
        draw.rectangle([0, h - 11, w, h], fill=(0, 0, 0))
        draw.text((2, h - 11), f"s{k} " + (f"gap {round(gap)} px" if gap < 1e8 else "one out"), fill=(255,) * 3)
        out.paste(im, ((k % COLUMNS) * (w + 3), 16 + (k // COLUMNS) * (h + 3)))
    return out


def wrong_by_label(rows: list[dict]) -> dict[str, list[dict]]:
    """The touch answers the model got wrong, by label: the misses under "Yes", the false Yes under "No"."""
    return {a: [r for r in rows if r["answer"] == a and (r["p_yes"] >= 0.5) != (a == "Yes")] for a in ("Yes", "No")}


def most_confident(errors: dict[str, list[dict]], each: int) -> list[dict]:
    """The `each` misses with the lowest P(Yes), then the `each` false Yes with the highest."""
    return [*sorted(errors["Yes"], key=lambda r: r["p_yes"])[:each],
            *sorted(errors["No"], key=lambda r: -r["p_yes"])[:each]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("answers", help="the JSONL of `codecsight eval --answers`")
    p.add_argument("data", help="the labelled split it was run on (videos and scene files)")
    p.add_argument("--each", type=int, default=2, help="misses and false Yes drawn (default: %(default)s)")
    p.add_argument("--out", default="docs/touch-errors.jpg")
    args = p.parse_args(argv)
    if args.each < 1:
        p.error(f"--each must be 1 or more, got {args.each}")
    rows = [r for r in map(json.loads, open(args.answers)) if r.get("type") == "touch" and "answer" in r]
    errors = wrong_by_label(rows)
    picked = most_confident(errors, args.each)
    if not picked:
        p.error(f"{args.answers}: no touch errors")
    name = os.path.basename(os.path.normpath(args.data))
    if missing := [r["video"] for r in picked if not os.path.exists(os.path.join(args.data, f"{r['video']}.json"))]:
        p.error(f"{args.data}: no scene file {missing[0]}.json; the picture needs a split `codecsight synth` wrote")
    labelled = {(os.path.splitext(r["video"])[0], r["start"], r["question"], r["answer"])
                for r in map(json.loads, open(os.path.join(args.data, "labels.jsonl")))}
    if any((r["video"], r["start"], r["question"], r["answer"]) not in labelled for r in picked):
        p.error(f"{args.answers}: its windows are not those labelled in {args.data}/labels.jsonl")
    strips = [strip(args.data, r, f"{'missed' if r['answer'] == 'Yes' else 'false Yes'}: {name} {r['video']} "
                    f"{r['start']:.0f}-{r['start'] + WINDOW / RATE:.0f} s, label {r['answer']}, "
                    f"P(Yes) {r['p_yes']:.2f}") for r in picked]
    sheet = Image.new("RGB", (strips[0].width, sum(s.height + 8 for s in strips)), (255, 255, 255))
    for i, s in enumerate(strips):
        sheet.paste(s, (0, sum(x.height + 8 for x in strips[:i])))
    sheet.save(args.out, quality=85)
    print(f"wrote {args.out} ({len(errors['Yes'])} misses and {len(errors['No'])} false Yes of {len(rows)} windows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
