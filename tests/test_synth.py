"""The labelled stream generator: deterministic, camera-like encodes, labels that agree with the scene."""
import json

import numpy as np
import pytest

from codecsight.signals import read_signals
from codecsight.synth.cli import generate
from codecsight.synth.labels import QUESTION_TYPES, QUESTIONS


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(str(out), seed=5, minutes=0.5, split="heldout", video_minutes=0.25, progress=False)
    return out


def rows(folder):
    return [json.loads(line) for line in open(folder / "labels.jsonl")]


def test_deterministic_from_seed(heldout, tmp_path):
    """`codecsight synth --seed N` writes the same bytes every time (x264 runs single-threaded)."""
    import subprocess
    import sys

    for name, seed in (("again", 5), ("other", 6)):
        subprocess.run([sys.executable, "-m", "codecsight", "synth", "--seed", str(seed), "--minutes", "0.5",
                        "--video-minutes", "0.25", "--split", "heldout", "--out", str(tmp_path / name)],
                       check=True, capture_output=True)
    assert rows(tmp_path / "again") == rows(heldout)
    for video in ("stream_0000.mp4", "stream_0001.mp4"):
        assert (tmp_path / "again" / video).read_bytes() == (heldout / video).read_bytes()
    assert (tmp_path / "other" / "stream_0000.mp4").read_bytes() != (heldout / "stream_0000.mp4").read_bytes()


def test_labels_cover_every_window_and_question_type(heldout):
    meta = json.load(open(heldout / "meta.json"))
    assert (meta["rate"], meta["window"], meta["stride"], meta["videos"]) == (2.0, 16, 4, 2)
    r = rows(heldout)
    assert {x["type"] for x in r} <= set(QUESTION_TYPES) and {x["question"] for x in r} <= {q.text for q in QUESTIONS}
    starts = sorted({x["start"] for x in r if x["video"] == "stream_0000.mp4"})
    assert starts == [2.0 * k for k in range(len(starts))] and starts[-1] + 8.0 <= 15.0
    assert all(x["end"] - x["start"] == 8.0 and x["answer"] in ("Yes", "No") for x in r)
    # both answers occur for presence questions
    assert {x["answer"] for x in r if x["type"] in ("colour", "kind")} == {"Yes", "No"}


def test_encoded_like_a_camera(heldout):
    scene = json.load(open(heldout / "stream_0000.json"))
    enc = scene["encoding"]
    sigs = list(read_signals(str(heldout / "stream_0000.mp4")))
    assert len(sigs) == scene["frames"] and 10 <= enc["fps"] <= 30
    keys = [s.index for s in sigs if s.key_frame]
    assert keys[0] == 0 and all(b - a == enc["gop"] for a, b in zip(keys, keys[1:]))
    assert ("B" in {s.frame_type for s in sigs}) == (enc["bframes"] > 0)


def test_enter_labels_agree_with_the_scene(heldout):
    """A window labelled 'an object enters' contains a sample where some object is first seen in the frame."""
    from codecsight.synth.labels import sample_frames_at, scene_states
    from codecsight.synth.scene import Scene, Style, Obj

    data = json.load(open(heldout / "stream_0000.json"))
    scene = Scene(Style(**data["style"]), data["duration"], [Obj(**o) for o in data["objects"]])
    n = data["frames"]
    times = np.array(sample_frames_at(data["encoding"]["fps"], 2.0, n)) / data["encoding"]["fps"]
    states = scene_states(scene, times)
    for x in rows(heldout):
        if x["video"] != "stream_0000.mp4" or x["type"] != "enter":
            continue
        w = slice(int(x["start"] * 2), int(x["end"] * 2))
        vis = states.visible[:, w]
        entered = ((vis[:, :-1] == 0) & (vis[:, 1:] == 1)).any() or ((vis[:, 0] == 0)[:, None] & (vis == 1)).any()
        assert entered == (x["answer"] == "Yes")
