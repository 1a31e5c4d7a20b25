"""Per-block prediction modes of HEVC frames through the system's libde265.

FFmpeg's HEVC decoder exports no motion vectors and no QP map. libde265 (a Debian package, pulled in with
ffmpeg or libheif) exports `draw_PB_pred_modes`, which paints every prediction block in one of three colours:
intra, inter (with a residual or a non-merged vector) and skip. We decode the same packets a second time with it
(Annex-B input) and read the paint back per 16x16 block. Where the library is missing, the reader says so once and
every block counts as changed (full compute) rather than guessing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from collections import deque

import numpy as np

from codecsight.signals.frame import MB

_LIB = None
DE265_OK = 0
# draw_PB_pred_modes paints 32-bit pixels: intra in bits 16-23, skip in bits 8-15, inter in bits 0-7
# (checked on x265 streams: I-frames paint only the intra byte, static areas of P-frames only the skip byte).
_INTRA, _SKIP, _INTER = 16, 8, 0


def load_libde265():
    """The libde265 shared library with the prototypes we use, or None where it is not installed."""
    global _LIB
    if _LIB is None:
        name = ctypes.util.find_library("de265") or "libde265.so.0"
        try:
            lib = ctypes.CDLL(name)
            lib.draw_PB_pred_modes  # noqa: B018  (older builds do not export it)
        except (OSError, AttributeError):
            _LIB = False
            return None
        vp, i, ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
        for fn, res, args in [
            ("de265_new_decoder", vp, []), ("de265_free_decoder", i, [vp]),
            ("de265_push_data", i, [vp, ctypes.c_char_p, i, ll, vp]), ("de265_push_end_of_frame", None, [vp]),
            ("de265_flush_data", i, [vp]), ("de265_decode", i, [vp, ctypes.POINTER(i)]),
            ("de265_get_next_picture", vp, [vp]), ("de265_get_image_width", i, [vp, i]),
            ("de265_get_image_height", i, [vp, i]), ("de265_get_image_PTS", ll, [vp]),
            ("draw_PB_pred_modes", None, [vp, vp, i, i]),
        ]:
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
        _LIB = lib
    return _LIB or None


class HevcBlockModes:
    """A libde265 decoder fed with the same packets as FFmpeg; results are looked up by pts."""

    def __init__(self, lib, annexb_filter=None):
        self.lib = lib
        self.ctx = lib.de265_new_decoder()
        self.filter = annexb_filter  # mp4/mkv carry length-prefixed NAL units: convert to Annex-B
        self.modes: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # pts -> (intra, inter) per block
        self.unstamped: deque = deque()  # raw streams carry no pts: both decoders output in display order

    @classmethod
    def open(cls, stream, stats) -> "HevcBlockModes | None":
        lib = load_libde265()
        if lib is None:
            stats.note("HEVC: libde265 not found, so no per-block data: every block counts as changed "
                       "(full compute). Install it (Debian: libde265-0) for codec-guided savings on HEVC.")
            return None
        extradata = stream.codec_context.extradata or b""
        bsf = None
        if extradata[:1] == b"\x01":  # hvcC: length-prefixed NAL units
            import av.bitstream

            bsf = av.bitstream.BitStreamFilterContext("hevc_mp4toannexb", stream)
        return cls(lib, bsf)

    def push(self, packet):
        packets = self.filter.filter(packet) if self.filter is not None else [packet]
        for p in packets:
            data = bytes(p)
            if data:
                self.lib.de265_push_data(self.ctx, data, len(data), p.pts if p.pts is not None else -1, None)
                self.lib.de265_push_end_of_frame(self.ctx)
        self._decode()

    def flush(self):
        self.lib.de265_flush_data(self.ctx)
        self._decode()

    def _decode(self):
        more = ctypes.c_int(1)
        while more.value:
            if self.lib.de265_decode(self.ctx, ctypes.byref(more)) != DE265_OK:
                break
            self._drain()
        self._drain()

    def _drain(self):
        while True:
            img = self.lib.de265_get_next_picture(self.ctx)
            if not img:
                return
            w, h = self.lib.de265_get_image_width(img, 0), self.lib.de265_get_image_height(img, 0)
            rows, cols = -(-h // MB), -(-w // MB)
            # coded blocks may reach past the cropped picture: paint into a margin, then crop to whole blocks
            paint = np.zeros((rows * MB + 64, cols * MB + 64), np.uint32)
            self.lib.draw_PB_pred_modes(img, paint.ctypes.data, paint.shape[1] * 4, 4)
            blocks = paint[:rows * MB, :cols * MB].reshape(rows, MB, cols, MB).max(axis=(1, 3))
            intra = ((blocks >> _INTRA) & 0xFF) > 0
            inter = ((blocks >> _INTER) & 0xFF) > 0
            pts = self.lib.de265_get_image_PTS(img)
            if pts < 0:
                self.unstamped.append((intra, inter))
            else:
                self.modes[pts] = (intra, inter)

    def ready(self, pts: int | None) -> bool:
        return bool(self.unstamped) if pts is None else pts in self.modes

    def take(self, pts: int | None):
        """(mv_max, mv_mean, intra) for the frame at `pts`, or None if libde265 has not produced it."""
        if pts is None:
            modes = self.unstamped.popleft() if self.unstamped else None
        else:
            modes = self.modes.pop(pts, None)
        if modes is None:
            return None
        intra, inter = modes
        # No vectors are exported: an inter block with a residual or its own vector is motion of unknown size
        # (inf passes every threshold), a skipped block is still.
        mv_max = np.where(inter & ~intra, np.inf, 0).astype(np.float32)
        return mv_max, np.zeros(intra.shape + (2,), np.float32), intra

    def close(self):
        if self.ctx:
            self.lib.de265_free_decoder(self.ctx)
            self.ctx = None
