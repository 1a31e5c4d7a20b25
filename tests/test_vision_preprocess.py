"""Own preprocessing is bit-identical to the transformers PIL image processors and uses the video processor's
patch order."""
import numpy as np
import pytest
import torch

from codecsight.errors import ConfigError
from codecsight.geometry import INTERNVL3, QWEN2_5_VL, QWEN3_VL
from codecsight.vision.preprocess import (CLIP_MEAN, CLIP_STD, HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD,
                                          image_pixel_values, normalise, resize_frames,
                                          video_pixel_values)


def _frames(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("geometry, mean, std", [(QWEN2_5_VL, CLIP_MEAN, CLIP_STD), (QWEN3_VL, HALF_MEAN, HALF_STD)])
def test_qwen_single_image_bit_identical(geometry, mean, std):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    raw = _frames(1, 150, 230)  # not whole tokens: both sides resize it
    proc = Qwen2VLImageProcessorPil(patch_size=geometry.patch, merge_size=geometry.merge, image_mean=mean,
                                    image_std=std)
    ref = proc(images=[raw[0]], return_tensors="np")
    t, gh, gw = ref["image_grid_thw"][0]
    frames = resize_frames(raw, gh * geometry.patch, gw * geometry.patch)
    pixels, grid = video_pixel_values(frames, geometry, mean, std)  # one frame: repeated, as the image path
    assert grid == (t, gh, gw)
    assert pixels.dtype == torch.float32
    assert np.array_equal(pixels.numpy(), ref["pixel_values"])


def test_qwen_video_order_matches_video_processor():
    # transformers' Qwen2VLVideoProcessor.patchify needs torchvision; its view/permute is restated here.
    frames = _frames(5, 56, 84, seed=1)
    pixels, (t, gh, gw) = video_pixel_values(frames)
    p, m = QWEN2_5_VL.patch, QWEN2_5_VL.merge
    padded = np.concatenate([frames, frames[-1:]])  # odd count: the last frame is repeated
    v = torch.from_numpy(normalise(padded)).permute(0, 3, 1, 2)[None]  # (B, T, C, H, W)
    v = v.reshape(1, 3, 2, 3, gh // m, m, p, gw // m, m, p)
    ref = v.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9).reshape(t * gh * gw, 3 * 2 * p * p)
    assert (t, gh, gw) == (3, 4, 6)
    assert torch.equal(pixels, ref)


def test_internvl_bit_identical():
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    raw = _frames(2, 300, 500, seed=2)
    proc = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, image_mean=IMAGENET_MEAN,
                                    image_std=IMAGENET_STD, crop_to_patches=False)
    ref = proc(images=list(raw), return_tensors="np")["pixel_values"]
    ours = image_pixel_values(resize_frames(raw, 448, 448))
    assert np.array_equal(ours.numpy(), ref)
    # The patch rows the pruned InternVL encoder gathers are the same pixels.
    patches, grid = video_pixel_values(resize_frames(raw, 448, 448), INTERNVL3, IMAGENET_MEAN, IMAGENET_STD)
    assert grid == (2, 32, 32)
    first = ours[0, :, :14, :14].reshape(-1)
    assert torch.equal(patches[0], first)


def test_bad_frames_raise_typed_errors():
    with pytest.raises(ConfigError):
        video_pixel_values(np.zeros((2, 50, 56, 3), np.uint8))
    with pytest.raises(ConfigError):
        video_pixel_values(np.zeros((2, 56, 56, 3), np.float32))


def test_kept_tokens_equal_their_rows_of_the_full_output():
    """Picking tokens before normalising gives exactly their rows of the whole output, in every temporal patch."""
    frames = np.random.default_rng(3).integers(0, 256, (4, 168, 224, 3), dtype=np.uint8)
    full, grid = video_pixel_values(frames, QWEN2_5_VL)
    tokens = np.array([0, 5, 17, 47])
    part, part_grid = video_pixel_values(frames, QWEN2_5_VL, tokens=tokens)
    m2 = QWEN2_5_VL.merge ** 2
    assert part_grid == grid
    assert torch.equal(part, full.view(grid[0], -1, m2, full.shape[-1])[:, tokens].reshape(-1, full.shape[-1]))
    assert video_pixel_values(frames, QWEN2_5_VL, tokens=tokens[:0])[0].shape == (0, full.shape[-1])
