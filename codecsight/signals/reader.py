"""Per-frame codec signals read while decoding, and sampling at a target rate on the native stream.

H.264: motion vectors and the QP map come from FFmpeg's exported side data; a macroblock of a P/B-frame without
any motion vector is intra (checked on real clips). HEVC: FFmpeg exports neither, so per-block modes come from the
system's libde265 where it is installed (codecsight.signals.hevc), else every block counts as changed.
"""
from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import av.logging
import numpy as np

from codecsight.errors import SourceError, StreamTimeout
from codecsight.signals.frame import MB, FrameSignal, SampledFrame
from codecsight.signals.source import describe, open_container, stream_info, video_stream

PICT_TYPES = {1: "I", 2: "P", 3: "B"}


def blocks_from_vectors(frames: list[bytes | None], shape: tuple[int, int], all_intra: bool = False):
    """Per-macroblock (max |MV| px, mean MV px, intra) over one or more P/B-frames' exported motion vectors: each
    a copy of FFmpeg's AVMotionVector records (None: a frame that exported none, so every block of it is intra).

    Runs once per sample over every frame folded into it, in one vectorised pass: per-frame numpy calls would cost
    more than decoding a small frame. The records (40 bytes each, libavutil/motion_vector.h, stable since FFmpeg 3)
    are read in place as five little-endian int64 words: [source | w, h, src_x] [src_y, dst_x, dst_y] [flags]
    [motion_x | motion_y] [motion_scale]; integer arithmetic on those columns is several times faster than
    structured-dtype fields. Most vectors are zero (static background): only the non-zero ones are reduced.
    Vectors to a future reference (source > 0) are negated so that they read as motion from the past. A macroblock
    with no vector in some frame is intra."""
    rows, cols = shape
    n = rows * cols
    parts = [f for f in frames if f]
    all_intra = all_intra or len(parts) < len(frames)
    if not parts:
        return np.zeros(shape, np.float32), np.zeros(shape + (2,), np.float32), np.ones(shape, bool)
    w = np.frombuffer(b"".join(parts), np.int64).reshape(-1, 5)
    y, x = (w[:, 1] >> 36) & 0xFFF, (w[:, 1] >> 20) & 0xFFF  # dst_y >> 4, dst_x >> 4
    if len(w) and (y.max() >= rows or x.max() >= cols):  # block centres lie in the coded frame; never overflow
        y, x = np.minimum(y, rows - 1), np.minimum(x, cols - 1)
    frame = np.repeat(np.arange(len(parts)) * n, [len(p) // 40 for p in parts])
    mb = y * cols + x
    per_frame = np.bincount(frame + mb, minlength=len(parts) * n).reshape(len(parts), n)
    intra = (per_frame == 0).any(axis=0) | all_intra
    count = np.maximum(per_frame.sum(axis=0), 1)
    mv_max = np.zeros(n, np.float32)
    mean = np.zeros((n, 2), np.float32)
    nz = np.flatnonzero(w[:, 3])
    if len(nz):
        v = w[nz]
        sign = np.where(((v[:, 0] << 32) >> 32) > 0, -1.0, 1.0) / (v[:, 4] & 0xFFFF)
        dx, dy = ((v[:, 3] << 32) >> 32) * sign, (v[:, 3] >> 32) * sign  # motion_x sign-extended, motion_y
        where = mb[nz]
        np.maximum.at(mv_max, where, np.hypot(dx, dy).astype(np.float32))
        mean[:, 0] = np.bincount(where, dx, n) / count  # zero vectors count towards the mean too
        mean[:, 1] = np.bincount(where, dy, n) / count
    return mv_max.reshape(shape), mean.reshape(shape + (2,)), intra.reshape(shape)


@dataclass
class FrameRecord:
    """One decoded frame as the reader saw it, before its blocks are reduced: the reduction runs once per sample
    over every frame folded into it (`signal_of`)."""

    index: int
    pts: float
    frame_type: str
    key_frame: bool
    packet_size: int
    width: int
    height: int
    vectors: bytes | None = None  # H.264 P/B-frames: the exported motion vectors, None if it exported none
    blocks: tuple | None = None  # HEVC: (mv_max, mv_mean, intra) from libde265
    qp: np.ndarray | None = None
    known: bool = True  # False: no per-block data (damaged, HEVC without libde265)
    damaged: bool = False


def signal_of(records: list[FrameRecord]) -> FrameSignal:
    """The codec signal of the last record with every earlier one folded in: a block changed if it changed in any
    of them. Unknown blocks anywhere, or a resolution change, make the whole signal unknown (full compute)."""
    last = records[-1]
    size = sum(r.packet_size for r in records)
    damaged = any(r.damaged for r in records)
    if any(not r.known or (r.width, r.height) != (last.width, last.height) for r in records):
        return FrameSignal.unknown(last.index, last.pts, last.frame_type, last.key_frame, size, last.width,
                                   last.height, damaged=damaged)
    shape = (-(-last.height // MB), -(-last.width // MB))
    if last.blocks is not None:  # HEVC
        mv_max = np.maximum.reduce([r.blocks[0] for r in records])
        mv_mean = np.mean([r.blocks[1] for r in records], axis=0)
        intra = np.logical_or.reduce([r.blocks[2] for r in records])
    else:
        inter = [r for r in records if r.frame_type != "I"]
        mv_max, mv_mean, intra = blocks_from_vectors([r.vectors for r in inter], shape, len(inter) < len(records))
    return FrameSignal(last.index, last.pts, last.frame_type, last.key_frame, size, last.width, last.height,
                       mv_max, mv_mean, intra, last.qp, damaged=damaged)


@dataclass
class DecodeOptions:
    """How frames are decoded. Frame threading corrupts exported B-frame vectors, so only NONE or SLICE."""

    thread_type: str = "NONE"  # SLICE helps only multi-slice streams, and its workers' errors are not seen
    # Deblocking is a large share of H.264 decoding and the vectors do not depend on it; the pixels do, and every
    # later frame predicts from them. None: skip it when the reader is told no pixels are needed.
    skip_loop_filter: bool | None = None
    qp: bool = False  # export the per-block QP map (PyAV's qp_map() costs ~0.3 ms a frame, more than decoding)
    timeout: float = 10.0  # seconds: opening and each network read
    format: str | None = None  # force a demuxer for raw pipes: "mpegts", "h264", "hevc"

    def __post_init__(self):
        if self.thread_type not in ("NONE", "SLICE"):
            raise ValueError("thread_type must be NONE or SLICE: frame threading corrupts exported motion vectors")
        if not 0 < self.timeout <= 3600:
            raise ValueError(f"timeout must be in (0, 3600] s, got {self.timeout}")


@dataclass
class ReadStats:
    """Counters a reader keeps while it runs, for reports and the service's health."""

    frames: int = 0
    damaged_frames: int = 0
    decode_errors: int = 0
    messages: list[str] = field(default_factory=list)

    def note(self, message: str):
        if message not in self.messages:
            self.messages.append(message)
            print(f"codecsight: {message}", file=sys.stderr)


class SignalReader:
    """Iterates the decoded frames of one source as (av.VideoFrame, FrameRecord) pairs, in presentation order.

    Damage inside the bitstream never stops the reader: a packet the decoder rejects marks the frames up to the
    next key frame as damaged (their blocks unknown, i.e. full compute) and decoding continues.
    pixels=False promises that the frames' pixels will not be looked at, so decoding may skip the loop filter."""

    def __init__(self, source, options: DecodeOptions | None = None, pixels: bool = True):
        self.name = describe(source)
        self.options = options or DecodeOptions()
        self.container = open_container(source, self.options.timeout, self.options.format)
        try:
            self.stream = video_stream(self.container, self.name)
        except SourceError:
            self.container.close()
            raise
        self.info = stream_info(self.stream)
        cc = self.stream.codec_context
        self.stream.thread_type = self.options.thread_type
        opts = {"export_side_data": "mvs+venc_params" if self.options.qp else "mvs"}
        skip = self.options.skip_loop_filter
        if skip or (skip is None and not pixels):
            opts["skip_loop_filter"] = "all"
        cc.options = opts
        self.stats = ReadStats()
        if av.logging.get_level() is None or av.logging.get_level() > av.logging.ERROR:
            av.logging.set_level(av.logging.ERROR)  # decoder errors must reach the capture in __iter__
        self._hevc = cc.name == "hevc"
        self._hevc_blocks = None
        if self._hevc:
            from codecsight.signals.hevc import HevcBlockModes

            self._hevc_blocks = HevcBlockModes.open(self.stream, self.stats)

    def close(self):
        if self._hevc_blocks is not None:
            self._hevc_blocks.close()
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _packets(self):
        try:
            for packet in self.container.demux(self.stream):
                yield packet
        except av.error.TimeoutError as e:
            raise StreamTimeout(f"{self.name}: no data for {self.options.timeout:g} s") from e
        except av.error.EOFError:
            return
        except (av.error.FFmpegError, OSError) as e:
            # The demuxer itself cannot go on (a truncated container, a dropped connection): end cleanly.
            self.stats.note(f"{self.name}: stream ended early ({e})")

    def __iter__(self) -> Iterator[tuple[av.VideoFrame, FrameRecord]]:
        sizes: dict[int | None, int] = {}
        damaged = False
        seen_key = False
        pending: deque = deque()  # decoded frames waiting for their HEVC block modes
        for packet in self._packets():
            if packet.pts is not None or packet.size:
                sizes[packet.pts] = packet.size
            # The decoder conceals damaged macroblocks silently and only logs them: capture this thread's log.
            with av.logging.Capture(local=True) as errors:
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:
                    errors.append((av.logging.ERROR, "decoder", str(e)))
                    frames = []
            if errors or packet.is_corrupt:
                self.stats.decode_errors += 1
                self.stats.note(f"{self.name}: damaged packets; frames up to the next key frame get full compute")
                damaged = True
            if self._hevc_blocks is not None and packet.size:
                self._hevc_blocks.push(packet)  # after FFmpeg: the Annex-B filter takes the packet's data
            for frame in frames:
                if frame.key_frame and not frame.is_corrupt:
                    damaged = False
                    seen_key = True
                # Frames before the first key frame (a stream joined mid-GOP) reference pictures we never had.
                pending.append((frame, sizes.pop(frame.pts, 0), damaged or frame.is_corrupt or not seen_key))
            yield from self._ready(pending, final=False)
        if self._hevc_blocks is not None:
            self._hevc_blocks.flush()
        yield from self._ready(pending, final=True)

    def _ready(self, pending: deque, final: bool):
        """Frames whose signal can be made now. libde265 may output a picture a little after FFmpeg does: wait
        for it, but never more than a few frames (then the frame is unknown, i.e. full compute)."""
        while pending:
            frame = pending[0][0]
            if (not final and self._hevc_blocks is not None and len(pending) <= 8
                    and not self._hevc_blocks.ready(frame.pts)):
                return
            frame, size, bad = pending.popleft()
            yield frame, self._record(frame, size, bad)

    def _record(self, frame: av.VideoFrame, packet_size: int, damaged: bool) -> FrameRecord:
        index = self.stats.frames
        self.stats.frames += 1
        ftype = PICT_TYPES.get(int(frame.pict_type), "P")
        pts = float(frame.time) if frame.time is not None else index / (self.info.fps or 25.0)
        if damaged:
            self.stats.damaged_frames += 1
        rec = FrameRecord(index, pts, ftype, frame.key_frame, packet_size, frame.width, frame.height,
                          known=not damaged, damaged=damaged)
        if damaged:
            return rec
        if self._hevc:
            rec.blocks = self._hevc_blocks.take(frame.pts) if self._hevc_blocks is not None else None
            rec.known = rec.blocks is not None
        elif ftype != "I":
            mvs = frame.side_data.get("MOTION_VECTORS")
            if mvs is not None:
                rec.vectors = bytes(mvs)  # a copy: the frame's buffers are recycled
        if self.options.qp:
            params = frame.side_data.get("VIDEO_ENC_PARAMS")
            rec.qp = params.qp_map() if params is not None else None
        return rec


def read_signals(source, options: DecodeOptions | None = None) -> Iterator[FrameSignal]:
    """Codec signals of every decoded frame, each on its own (no pixels)."""
    with SignalReader(source, options, pixels=False) as reader:
        for _, record in reader:
            yield signal_of([record])


@dataclass(frozen=True)
class Sampling:
    """Sample at `fps` on the native stream; pixels (RGB at `size` = (height, width)) only for sampled frames."""

    fps: float = 2.0
    size: tuple[int, int] | None = (448, 448)
    pixels: bool = True

    def __post_init__(self):
        if not 0 < self.fps <= 240:
            raise ValueError(f"sampling rate must be in (0, 240] fps, got {self.fps}")
        if self.size is not None and not all(16 <= s <= 8192 for s in self.size):
            raise ValueError(f"output size must be within 16..8192 px per side, got {self.size}")


def sample_frames(source, sampling: Sampling = Sampling(), options: DecodeOptions | None = None,
                  reader: SignalReader | None = None) -> Iterator[SampledFrame]:
    """Sampled frames at `sampling.fps`, each with the codec signal aggregated over every decoded frame since the
    previous sample. The first decoded frame is always sampled."""
    own = reader is None
    reader = reader or SignalReader(source, options, pixels=sampling.pixels)
    try:
        period = 1.0 / sampling.fps
        next_t = None
        folded: list[FrameRecord] = []
        for frame, record in reader:
            folded.append(record)
            if next_t is not None and record.pts + 1e-6 < next_t:
                continue
            rgb = None
            if sampling.pixels:
                h, w = sampling.size or (frame.height, frame.width)
                rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="BICUBIC")
            yield SampledFrame(signal_of(folded), rgb, aggregated=len(folded),
                               source_types="".join(r.frame_type for r in folded))
            next_t = (record.pts if next_t is None else next_t) + period
            while next_t <= record.pts:  # a gap in the stream: do not emit a burst to catch up
                next_t += period
            folded = []
    finally:
        if own:
            reader.close()
