import json

from codecsight.cli import main


def test_probe_json_reports_stream_and_change_shares(square_clip, capsys):
    assert main(["probe", square_clip, "--json", "--size", "224"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["codec"] == "h264" and (rep["width"], rep["height"]) == (320, 192)
    assert rep["fps"] == 10 and rep["frames"] == 40 and rep["sampled"] == 8
    assert rep["frame_types"] == {"I": 4, "P": 32}  # the 4 frames after the last sample are not folded in
    assert rep["gop_lengths"] == [10, 10, 10] and not rep["b_frames"]
    assert 0 < rep["changed_share"]["P"] < 0.5  # the moving square, not the noisy background
    assert rep["damaged_frames"] == 0 and rep["realtime_factor"] > 1


def test_probe_heatmap_and_table(square_clip, tmp_path, capsys):
    png = tmp_path / "heat.png"
    assert main(["probe", square_clip, "--heatmap", str(png)]) == 0
    out = capsys.readouterr().out
    assert "GOP" in out and "changed" in out and "throughput" in out
    assert png.stat().st_size > 10_000 and open(png, "rb").read(4) == b"\x89PNG"


def test_probe_bad_source_is_a_clear_error(tmp_path, capsys):
    assert main(["probe", str(tmp_path / "missing.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["probe", __file__, "--geometry", "nope"]) == 2
