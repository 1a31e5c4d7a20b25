"""Draws docs/touch-rule.jpg: the touch label on a meet and a near-meet, 8 of a window's 16 samples each, with every
object's box and the smallest gap between two boxes. Frames are rendered from the scenes `codecsight synth` draws
(before x264), so no data folder is needed: `python docs/touch_rule.py` (about 10 s)."""
from __future__ import annotations

import math

from PIL import Image, ImageDraw

from codecsight.synth.cli import draw_video
from codecsight.synth.labels import box_gap, window_labels

SCALE = 0.5


def scene_and_renderer(seed: int, split: str, index: int, **options):
    """Video `index` of `codecsight synth --seed SEED --split SPLIT [options]` (2-minute videos)."""
    scene, _, renderer = draw_video(seed, split, index, 120.0, **options)
    return scene, renderer


def strip(scene, renderer, start: float, title: str) -> Image.Image:
    st = scene.style
    w, h = int(st.width * SCALE), int(st.height * SCALE)
    row = Image.new("RGB", (8 * w + 7 * 4, h + 18), (255, 255, 255))
    answer = next(r["answer"] for r in window_labels(scene, 2.0, 16, 4) if r["start"] == start and r["type"] == "touch")
    ImageDraw.Draw(row).text((2, 2), f"{title}: 'Do two objects touch?' {answer}", fill=(0, 0, 0))
    for k in range(8):
        n = math.ceil((start + k - 1e-6) * st.fps)  # every other sample of the window (2 fps)
        im = Image.fromarray(renderer.frame(n)).resize((w, h))
        draw = ImageDraw.Draw(im)
        boxes = [o.bbox(*s) for o in scene.objects if (s := o.state(n / st.fps)) is not None]
        for b in boxes:
            draw.rectangle([SCALE * v for v in b], outline=(255, 0, 255))
        gaps = [box_gap(A, B) for i, A in enumerate(boxes) for B in boxes[i + 1:]]
        draw.rectangle([0, h - 12, w, h], fill=(0, 0, 0))
        draw.text((3, h - 12), f"{start + k:.0f} s" + (f"  gap {min(gaps):.0f} px" if gaps else ""), fill=(255,) * 3)
        row.paste(im, (k * (w + 4), 18))
    return row


def main(out: str = "docs/touch-rule.jpg") -> None:
    rows = [strip(*scene_and_renderer(2, "heldout", 0), 8.0, "meet (held-out seed 2, stream_0000, 8-16 s): the boxes "
                  "stop 1 px apart, unlabelled through session 31"),
            strip(*scene_and_renderer(126, "train", 16, near=0.2), 44.0, "near-meet (synth --near 0.2, train seed "
                  "126, stream_0016, 44-52 s): the boxes stop 8-20 px apart")]
    sheet = Image.new("RGB", (rows[0].width, sum(r.height for r in rows) + 6), (255, 255, 255))
    for i, r in enumerate(rows):
        sheet.paste(r, (0, i * (r.height + 6)))
    sheet.save(out, quality=85)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
