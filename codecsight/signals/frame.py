"""The things that flow out of the codec layer: one decoded frame's signal, and a sampled frame."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MB = 16  # codec block side in px (H.264 macroblock; HEVC prediction blocks are rasterised onto the same grid)


@dataclass
class FrameSignal:
    """Codec signal of one decoded frame, per 16x16 block (rows x cols of ceil(H/16) x ceil(W/16)).

    mv_max: largest motion-vector magnitude in px over partitions and both reference lists.
    mv_mean: mean motion vector (dx, dy) in px over the block's partitions.
    intra: block coded without motion compensation (in I-frames every block).
    qp: per-block quantiser where the decoder exports it, else None.
    blocks_known: False where no per-block data exists (HEVC without libde265, damaged GOPs): every block then
    counts as changed, i.e. full compute, rather than a guess.
    """

    index: int
    pts: float
    frame_type: str  # "I", "P" or "B"
    key_frame: bool
    packet_size: int
    width: int
    height: int
    mv_max: np.ndarray
    mv_mean: np.ndarray
    intra: np.ndarray
    qp: np.ndarray | None = None
    blocks_known: bool = True
    damaged: bool = False

    @property
    def blocks_shape(self) -> tuple[int, int]:
        return self.intra.shape

    @classmethod
    def unknown(cls, index: int, pts: float, frame_type: str, key_frame: bool, packet_size: int,
                width: int, height: int, damaged: bool = False) -> "FrameSignal":
        """A frame whose blocks we know nothing about: every block is treated as changed."""
        shape = (-(-height // MB), -(-width // MB))
        return cls(index, pts, frame_type, key_frame, packet_size, width, height,
                   mv_max=np.zeros(shape, np.float32), mv_mean=np.zeros(shape + (2,), np.float32),
                   intra=np.ones(shape, bool), blocks_known=False, damaged=damaged)


@dataclass
class SampledFrame:
    """A frame picked at the sampling rate, with its pixels and the codec signal aggregated over every decoded
    frame since the previous sample (a block changed if it changed in any of them)."""

    signal: FrameSignal
    rgb: np.ndarray | None  # (H, W, 3) uint8 at the requested output size
    aggregated: int = 1  # decoded frames folded into `signal`
    source_types: str = field(default="")  # frame types folded in, e.g. "PBBP"


@dataclass
class TokenChange:
    """The change map of one sampled frame on a model's token grid: which tokens changed since they were last
    encoded, and the score behind each decision."""

    changed: np.ndarray  # bool (rows, cols)
    score: np.ndarray  # float32 (rows, cols); higher = more evidence of change
    full: bool  # the whole frame must be encoded: first frame, resolution change, unknown or damaged blocks
    key: bool = False  # a key frame was decoded since the last sample (the plan may choose to encode it fully)
    index: int = 0  # index of the sampled frame's decoded frame
    pts: float = 0.0
