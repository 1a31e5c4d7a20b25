"""Own frame preprocessing: resize, normalise, patchify.

Bit-identical to transformers' PIL image processors (`Qwen2VLImageProcessorPil`, `GotOcr2ImageProcessorPil` used by
InternVL) for the same frame, without torchvision. The patch layout is the Qwen video processor's: one row per ViT
patch, rows ordered temporal patch -> merged token (raster) -> patch inside the token (raster), each row
flattened as (channel, frame in temporal patch, patch row, patch col). A merged LLM token is therefore 4
consecutive rows, which is what lets the pruned ViT pick whole tokens with one index.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from codecsight.errors import ConfigError
from codecsight.geometry import QWEN2_5_VL, TokenGeometry

# The processors' constants (transformers.image_utils): Qwen2.5-VL and InternVL's ViT preprocess with CLIP /
# ImageNet statistics, Qwen3-VL with 0.5 / 0.5.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, height, width, 3) uint8 with PIL bicubic, as the PIL processors resize."""
    frames = _check_frames(frames)
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in frames])


def normalise_table(mean=CLIP_MEAN, std=CLIP_STD) -> np.ndarray:
    """(256, 3) float32: the normalised value of every uint8 level per channel, computed with the processors'
    exact float steps (rescale in float64 then cast to float32; subtract and divide in float32), so a table
    lookup is bit-identical to their arithmetic and much cheaper."""
    levels = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)[:, None]
    return (levels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def normalise(frames: np.ndarray, mean=CLIP_MEAN, std=CLIP_STD) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H, W, 3) float32 normalised."""
    return _lookup(_check_frames(frames), mean, std)


def _lookup(x: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (..., 3) -> float32 (..., 3) through the normalise table."""
    table = normalise_table(mean, std).T.copy()
    out = np.empty(x.shape, np.float32)
    for c in range(3):  # one 256-entry take per channel: ~6x faster than indexing the table by (level, channel)
        out[..., c] = table[c].take(x[..., c])
    return out


def video_pixel_values(frames: np.ndarray, geometry: TokenGeometry = QWEN2_5_VL, mean=CLIP_MEAN, std=CLIP_STD,
                       tokens: np.ndarray | None = None):
    """Already-resized uint8 frames (T, H, W, 3) -> (pixel_values float32 [t*h*w, 3*temporal*patch*patch],
    grid_thw (t, h, w) in patches).

    Frames are grouped into temporal patches of `geometry.temporal`; an odd count repeats the last frame, as
    the transformers video processor does. H and W must be whole tokens (see `resize_frames`, geometry.snap).
    tokens: raster indices of the merged tokens to return (the same in every temporal patch), else all; they
    are picked before normalising, so a pruned patch costs only its kept tokens.
    """
    import torch

    frames = _check_frames(frames)
    T, H, W, C = frames.shape
    try:
        gh, gw = geometry.patch_grid(H, W)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if pad := -T % geometry.temporal:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    t, tp, p, m = len(frames) // geometry.temporal, geometry.temporal, geometry.patch, geometry.merge
    if tokens is None:
        tokens = np.arange(gh // m * (gw // m))
    # -> (t, K, tp, m, p, m, p, C): the kept tokens only, still uint8
    x = frames.reshape(t, tp, gh // m, m, p, gw // m, m, p, C)
    x = x[:, :, tokens // (gw // m), :, :, tokens % (gw // m)].transpose(1, 0, 2, 3, 4, 5, 6, 7)
    # -> (t, token, patch row in token, patch col in token, C, frame, py, px)
    x = _lookup(x, mean, std).transpose(0, 1, 3, 5, 7, 2, 4, 6)
    return torch.from_numpy(np.ascontiguousarray(x).reshape(-1, C * tp * p * p)), (t, gh, gw)


def image_pixel_values(frames: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Already-resized uint8 frames (T, H, W, 3) -> float32 (T, 3, H, W), the layout InternVL's vision tower
    takes (one 448 px tile per frame, no crop-to-patches)."""
    import torch

    x = normalise(frames, mean, std).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ConfigError(f"frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    return frames
