"""`codecsight eval`: scoring rules on hand-made answers, both label layouts, and the command end to end."""
import json

import numpy as np
import pytest
from clips import moving_square_clip
from tiny import tiny_vlm

from codecsight.cli import main
from codecsight.errors import ConfigError
from codecsight.evaluation import PROMPT, auc, read_labels, video_scores, window_scores, write_answers


def test_window_and_video_scores_by_hand():
    labels = [{"video": "a.mp4", "start": 0.0, "question": "q", "type": "t", "answer": "Yes"},
              {"video": "a.mp4", "start": 2.0, "question": "q", "type": "t", "answer": "No"},
              {"video": "b.mp4", "start": 0.0, "question": "q", "type": "u", "answer": "Yes"},
              {"video": "b.mp4", "start": 2.0, "question": "q", "type": "u", "answer": "No"}]
    answers = {("a", 0.0, "q"): 0.9, ("a", 2.0, "q"): 0.6, ("b", 0.0, "q"): 0.2}  # b@2 unanswered: No
    w = window_scores(labels, answers, 0.5)  # tp 1 (a@0), fp 1 (a@2), fn 1 (b@0)
    assert (w["precision"], w["recall"], w["f1"]) == (0.5, 0.5, 0.5)
    assert w["per_question"]["t"]["f1"] == pytest.approx(2 / 3) and w["per_question"]["u"]["f1"] == 0
    assert window_scores(labels, answers, 0.1)["recall"] == 1.0
    v = video_scores(labels, answers, 0.5)  # a: yes/yes, b: yes/no
    assert (v["precision"], v["recall"]) == (1.0, 0.5)
    t = w["per_question"]["t"]  # 0.9 (Yes) above 0.6 (No); answering Yes always: P 1/2, R 1
    assert (t["auc"], t["positive"], t["always_yes_f1"]) == (1.0, 1, pytest.approx(2 / 3))


def test_answers_file_carries_each_windows_label(tmp_path):
    """A window row's type and answer ride along with its P(Yes); an answer no row labels has none; order is by
    stream, then time."""
    labels = [{"video": "sub/b.mp4", "start": 2.0, "question": "q", "type": "t", "answer": "No"},
              {"video": "sub/a.mp4", "start": 0.0, "question": "q", "type": "t", "answer": "Yes"}]
    answers = {("b", 2.0, "q"): 0.25, ("a", 0.0, "q"): 0.75, ("a", 2.0, "q"): 0.5}
    write_answers(str(tmp_path / "x" / "answers.jsonl"), answers, labels)
    rows = [json.loads(line) for line in (tmp_path / "x" / "answers.jsonl").read_text().splitlines()]
    assert rows == [{"video": "a", "start": 0.0, "question": "q", "p_yes": 0.75, "type": "t", "answer": "Yes"},
                    {"video": "a", "start": 2.0, "question": "q", "p_yes": 0.5},
                    {"video": "b", "start": 2.0, "question": "q", "p_yes": 0.25, "type": "t", "answer": "No"}]


def test_per_question_scores_show_what_a_type_mean_hides():
    """Two questions of one type: one ranked perfectly, one backwards. The type reads middling; each question
    reads as it is, and the type's counts are the sum of its questions'."""
    labels = [{"video": "a.mp4", "start": float(s), "question": q, "type": "kind", "answer": a}
              for q in ("Is there a car?", "Is there a ball?") for s, a in ((0, "Yes"), (2, "No"))]
    answers = {("a", 0.0, "Is there a car?"): 0.9, ("a", 2.0, "Is there a car?"): 0.1,
               ("a", 0.0, "Is there a ball?"): 0.2, ("a", 2.0, "Is there a ball?"): 0.7}
    w = window_scores(labels, answers, 0.5)
    car, ball = w["questions"]["Is there a car?"], w["questions"]["Is there a ball?"]
    assert (car["auc"], car["f1"], car["type"]) == (1.0, 1.0, "kind")
    assert (ball["auc"], ball["f1"], ball["type"]) == (0.0, 0.0, "kind")
    kind = w["per_question"]["kind"]  # Yes 0.9, 0.2 against No 0.1, 0.7: 3 of 4 pairs
    assert kind["auc"] == 0.75 and kind["support"] == car["support"] + ball["support"] == 4
    assert kind["f1"] == pytest.approx(0.5) and w["f1"] == kind["f1"]


def test_auc_counts_ordered_pairs_and_half_ties():
    p = np.array([0.3, 0.3, 0.8, 0.1, 0.5])
    y = np.array([True, False, False, True, True])  # Yes 0.3, 0.1, 0.5 against No 0.3, 0.8
    assert auc(p, y) == pytest.approx((0.5 + 0 + 0 + 0 + 1 + 0) / 6)
    rng = np.random.default_rng(0)
    p, y = rng.integers(0, 5, 200) / 4, rng.random(200) < 0.3  # many ties
    pairs = (p[y][:, None] > p[~y][None]).mean() + 0.5 * (p[y][:, None] == p[~y][None]).mean()
    assert auc(p, y) == pytest.approx(pairs)
    assert auc(p, np.ones(200, bool)) is None and auc(1 - p, y) == pytest.approx(1 - pairs)


def test_label_layouts(tmp_path):
    f = tmp_path / "labels.jsonl"
    f.write_text('{"video": "v1.mp4", "category": "Fighting", "answer": "yes"}\n\n'
                 '{"video": "v2.mp4", "start": 0, "end": 8, "question": "Is there a car?", "answer": "No"}\n')
    rows = read_labels(str(f))
    assert rows[0]["question"] == PROMPT.replace("{X}", "Fighting") and rows[0]["answer"] == "Yes"
    assert rows[0]["type"] == "Fighting" and rows[1]["question"] == "Is there a car?"
    f.write_text('{"video": "v1.mp4", "category": "Fighting", "answer": "maybe"}\n')
    with pytest.raises(ConfigError, match="labels.jsonl:1"):
        read_labels(str(f))
    f.write_text("")
    with pytest.raises(ConfigError, match="no labels"):
        read_labels(str(f))


def test_eval_command_on_a_ucf_crime_layout(tmp_path, capsys):
    """Videos plus a video-level labels file with categories, the published prompt, two methods."""
    data = tmp_path / "ucf"
    data.mkdir()
    for name in ("Fighting001_x264", "Normal002_x264"):
        moving_square_clip(str(data / f"{name}.mp4"), n=100)
    (data / "labels.jsonl").write_text(
        '{"video": "Fighting001_x264.mp4", "category": "Fighting", "answer": "Yes"}\n'
        '{"video": "Normal002_x264.mp4", "category": "Fighting", "answer": "No"}\n')
    model = tmp_path / "model"
    ad = tiny_vlm()
    ad.model.save_pretrained(model)
    ad.tokenizer.save_pretrained(model)
    out, answers = tmp_path / "r.json", tmp_path / "answers.jsonl"
    assert main(["eval", "--labels", str(data / "labels.jsonl"), "--model", str(model), "--method", "codecsight",
                 "--json", str(out), "--window", "8", "--stride", "2", "--answers", str(answers)]) == 0
    r = json.loads(out.read_text())
    assert set(r) >= {"model", "method", "f1", "precision", "recall", "per_question", "tokens_fraction",
                      "flops_fraction"}
    assert r["method"] == "codecsight" and 0 <= r["f1"] <= 1 and r["windows"] == 2 * 7
    assert 0 < r["tokens_fraction"] < 1 and 0 < r["flops_fraction"] < 1
    assert len(r["sweep"]) == 19 and not r["failed"]
    # the stages run one after another on the engine thread: their sum is part of the wall time
    assert set(r["stage_seconds"]) == {"plan", "vit", "prefill", "answer"}
    assert 0 < sum(r["stage_seconds"].values()) <= r["seconds"]
    assert r["per_question"]["Fighting"]["support"] == 2
    assert "video-level F1" in capsys.readouterr().out
    # every window's answer, from which the video-level score can be made again
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(rows) == r["windows"] and all(0 <= a["p_yes"] <= 1 for a in rows)
    said = {v: any(a["p_yes"] >= 0.5 for a in rows if a["video"] == v) for v in ("Fighting001_x264", "Normal002_x264")}
    tp, fp = int(said["Fighting001_x264"]), int(said["Normal002_x264"])
    assert r["video"]["f1"] == pytest.approx(2 * tp / (2 * tp + fp + (1 - tp)))
    assert main(["eval", "--labels", str(data / "labels.jsonl"), "--model", str(model), "--method", "bogus"]) == 2


def test_f1_intervals_resample_blocks_and_pair_the_difference():
    """The bootstrap interval holds the point estimate and narrows with more blocks; the same answers differ from
    themselves by exactly 0; a method that misses a third of the Yes windows is worse than the reference on every
    resample; and the intervals are the same on every run."""
    rng = np.random.default_rng(1)
    labels = [{"video": f"v{v}.mp4", "start": 2.0 * k, "question": "q", "type": "t",
               "answer": "Yes" if rng.random() < 0.4 else "No"} for v in range(4) for k in range(120)]
    truth = {(r["video"][:-4], r["start"], "q"): r["answer"] == "Yes" for r in labels}
    good = {k: (0.8 if y else 0.2) if rng.random() < 0.9 else (0.3 if y else 0.7) for k, y in truth.items()}
    worse = {k: 0.1 if y and rng.random() < 0.33 else p for (k, p), y in zip(good.items(), truth.values())}
    w = window_scores(labels, good, 0.5, intervals=True)
    lo, hi = w["per_question"]["t"]["f1_ci"]
    assert lo < w["f1"] < hi and hi - lo < 0.15 and w["f1_ci"] == [lo, hi]
    few = window_scores(labels[:120], good, 0.5, intervals=True)["f1_ci"]  # one video: 4 blocks of a minute
    assert few[1] - few[0] > hi - lo
    same = window_scores(labels, good, 0.5, ref=good, intervals=True)
    assert same["f1_delta"] == 0 and same["f1_delta_ci"] == [0.0, 0.0]
    d = window_scores(labels, worse, 0.5, ref=good, intervals=True)["per_question"]["t"]
    assert d["f1_delta"] < 0 and d["f1_delta_ci"][1] < 0
    assert window_scores(labels, worse, 0.5, ref=good, intervals=True)["per_question"]["t"] == d
    assert "f1_ci" not in window_scores(labels, good, 0.5)
