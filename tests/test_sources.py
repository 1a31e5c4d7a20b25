"""Sources and bad input: every way a stream can be broken gives a clear typed error or a stream that goes on."""
import http.server
import os
import shutil
import signal
import socketserver
import threading
from contextlib import contextmanager

import numpy as np
import pytest
from clips import encode, moving_square_clip, scene, shared_clip

from codecsight.errors import SourceError, UnsupportedCodecError
from codecsight.geometry import QWEN2_5_VL
from codecsight.signals import ChangeMap, DecodeOptions, Sampling, read_signals, sample_frames
from codecsight.signals.hevc import load_libde265


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging."""
    def boom(*_):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def ts_clip(clip_dir):
    return moving_square_clip(str(clip_dir / "square.ts"), n=60)


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        list(read_signals(str(tmp_path / "nope.mp4")))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty"):
        list(read_signals(str(empty)))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(20000))
    with pytest.raises(SourceError):
        list(read_signals(str(garbage)))


@pytest.mark.parametrize("codec,ext", [("libvpx-vp9", "webm"), ("mjpeg", "avi")])
def test_unsupported_codec(tmp_path, codec, ext):
    path = encode(str(tmp_path / f"clip.{ext}"), (rgb for rgb, _ in scene(6)), codec=codec)
    with pytest.raises(UnsupportedCodecError, match="not supported"):
        list(read_signals(path))


def test_truncated_files(tmp_path, square_clip, ts_clip):
    # mp4 written by PyAV keeps its index at the end: a cut file cannot be opened at all
    data = open(square_clip, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError):
        list(read_signals(str(cut)))
    # a stream format decodes what arrived and ends cleanly
    data = open(ts_clip, "rb").read()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2])
    with deadline(20):
        sigs = list(read_signals(str(cut)))
    assert 10 < len(sigs) < 60


def test_flipped_bytes_inside_packets_mark_damage_and_continue(tmp_path, ts_clip):
    data = bytearray(open(ts_clip, "rb").read())
    rng = np.random.default_rng(1)
    for pos in rng.integers(len(data) // 4, len(data) // 2, 40):
        data[pos] ^= 0xFF
    bad = tmp_path / "flipped.ts"
    bad.write_bytes(bytes(data))
    with deadline(20):
        sigs = list(read_signals(str(bad)))
    assert len(sigs) >= 50  # decoding went on after the damage
    damaged = [s.index for s in sigs if s.damaged]
    assert damaged and all(not s.blocks_known for s in sigs if s.damaged)
    assert not sigs[0].damaged and not sigs[-1].damaged  # the first and last GOPs were untouched


def test_fuzz_corrupted_copies_of_a_real_clip(tmp_path):
    """Many randomly corrupted copies of a real camera clip: each either raises SourceError or decodes to the end,
    never hangs, never raises anything else; frames of damaged GOPs are full compute."""
    src = shared_clip("car")
    if not os.path.exists(src):
        pytest.skip("shared clips not present")
    data = open(src, "rb").read()
    rng = np.random.default_rng(7)
    outcomes = {"error": 0, "decoded": 0}
    for i in range(16):
        buf = bytearray(data)
        kind = i % 4
        if kind == 0:  # flipped bytes anywhere
            for pos in rng.integers(0, len(buf), 50):
                buf[pos] = rng.integers(0, 256)
        elif kind == 1:  # a zeroed run inside the media data
            start = int(rng.integers(len(buf) // 10, len(buf) - 20000))
            buf[start:start + 10000] = bytes(10000)
        elif kind == 2:  # truncated at a random point
            buf = buf[: int(rng.integers(1000, len(buf)))]
        else:  # a random run copied over another place
            a, b = rng.integers(0, len(buf) - 5000, 2)
            buf[a:a + 5000] = buf[b:b + 5000]
        path = tmp_path / f"fuzz{i}.mp4"
        path.write_bytes(bytes(buf))
        with deadline(30):
            try:
                sigs = list(read_signals(str(path)))
            except SourceError:
                outcomes["error"] += 1
                continue
        outcomes["decoded"] += 1
        assert all(s.blocks_shape == (27, 48) for s in sigs)
        assert all(not s.blocks_known for s in sigs if s.damaged)
        path.unlink()
    assert outcomes["decoded"] >= 4  # most damage is survivable


def test_unreachable_url_fails_fast():
    with deadline(15):
        with pytest.raises(SourceError, match="cannot open|timed out"):
            list(read_signals("http://127.0.0.1:9/stream.ts", DecodeOptions(timeout=2.0)))


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    stall = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        self.wfile.write(self.payload)
        self.wfile.flush()
        self.stall.wait(30)  # the camera stops sending but keeps the connection open

    def log_message(self, *args):
        pass


def test_http_stream_that_stops_ends_within_the_timeout(ts_clip):
    data = open(ts_clip, "rb").read()
    _StallingHandler.payload = data[: (len(data) // 2) // 188 * 188]
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _StallingHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cam.ts"
    got = []
    try:
        with deadline(30):
            try:
                for sig in read_signals(url, DecodeOptions(timeout=2.0)):
                    got.append(sig)
            except SourceError as e:  # StreamTimeout
                assert "no data" in str(e) or "timed out" in str(e)
    finally:
        _StallingHandler.stall.set()
        server.shutdown()
    assert len(got) >= 15  # what arrived before the stall was delivered


def test_pipe_carrying_mpegts_and_raw_annexb(tmp_path, ts_clip):
    for path, fmt, n in [(ts_clip, None, 60),
                         (moving_square_clip(str(tmp_path / "raw.h264"), fmt="h264"), "h264", 40)]:
        r, w = os.pipe()
        data = open(path, "rb").read()

        def feed():
            with os.fdopen(w, "wb") as f:
                f.write(data)

        threading.Thread(target=feed, daemon=True).start()
        with deadline(30), os.fdopen(r, "rb") as pipe:
            sigs = list(read_signals(pipe, DecodeOptions(format=fmt)))
        assert len(sigs) == n
        assert sigs[0].frame_type == "I" and sigs[1].blocks_known


def test_resolution_change_mid_stream(tmp_path):
    a = encode(str(tmp_path / "a.h264"), (rgb for rgb, _ in scene(20)), fmt="h264")
    b = encode(str(tmp_path / "b.h264"), (rgb for rgb, _ in scene(20, width=256, height=160)), fmt="h264")
    both = tmp_path / "both.h264"
    with open(both, "wb") as out:
        for p in (a, b):
            out.write(open(p, "rb").read())
    sigs = list(read_signals(str(both), DecodeOptions(format="h264")))
    assert len(sigs) == 40
    assert {(s.width, s.height) for s in sigs} == {(320, 192), (256, 160)}
    cmap = ChangeMap(QWEN2_5_VL, (196, 336))
    changes = [cmap.update(s) for s in sample_frames(str(both), Sampling(2.0, (196, 336)),
                                                    DecodeOptions(format="h264"))]
    sizes = [c.full for c in changes]
    assert sizes[0] and any(sizes[1:])  # the new resolution starts afresh


def test_absurd_parameters():
    with pytest.raises(ValueError):
        DecodeOptions(timeout=0)
    with pytest.raises(ValueError):
        Sampling(fps=1e6)


@pytest.mark.parametrize("container", ["mp4", "hevc"])
def test_hevc_frame_types_and_block_modes(tmp_path, container):
    path = moving_square_clip(str(tmp_path / f"sq.{container}"), codec="libx265",
                              fmt="hevc" if container == "hevc" else None, bframes=2)
    sigs = list(read_signals(path))
    assert len(sigs) == 40
    assert sigs[0].frame_type == "I" and sigs[10].key_frame
    if load_libde265() is None:
        assert not any(s.blocks_known for s in sigs)  # unknown -> full compute, said once
        return
    assert all(s.blocks_known for s in sigs)
    assert sigs[0].intra.all()
    static = sigs[3]
    assert static.intra.mean() < 0.2 and np.isfinite(static.mv_max).mean() > 0.7  # mostly skip
    moving = sigs[16]
    row = slice(96 // 16 - 1, 96 // 16 + 2)
    assert (moving.intra[row] | ~np.isfinite(moving.mv_max[row])).any()


def test_hevc_without_libde265_is_full_compute(tmp_path, monkeypatch, capsys):
    import codecsight.signals.hevc as hevc

    monkeypatch.setattr(hevc, "_LIB", False)
    path = moving_square_clip(str(tmp_path / "sq.mp4"), codec="libx265")
    sigs = list(read_signals(path))
    assert len(sigs) == 40 and not any(s.blocks_known for s in sigs)
    assert capsys.readouterr().err.count("libde265 not found") == 1
    change = ChangeMap(QWEN2_5_VL, (196, 336))
    out = [change.update(s) for s in sample_frames(path, Sampling(2.0, (196, 336)))]
    assert all(c.full and c.changed.all() for c in out)


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX system")
def test_stdin_dash_source(ts_clip, monkeypatch):
    fd = os.open(ts_clip, os.O_RDONLY)
    saved = os.dup(0)
    os.dup2(fd, 0)
    try:
        sigs = list(read_signals("-"))
    finally:
        os.dup2(saved, 0)
        os.close(fd)
        os.close(saved)
    assert len(sigs) == 60
