"""Pruned ViT encoding on tiny random models of the three real transformers classes."""
import numpy as np
import pytest
import torch

from codecsight.errors import ConfigError
from codecsight.models.internvl3 import InternVL3Adapter
from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
from codecsight.models.qwen3_vl import Qwen3VLAdapter
from codecsight.vision.encoder import EncodeRequest, PrunedViT

# Input sizes: Qwen grids of 6x8 tokens (partial 4x4 windows for Qwen2.5-VL); InternVL's tiny tile is 112 px.
SIZES = {"qwen2_5_vl": (168, 224), "qwen3_vl": (192, 256), "internvl3": (112, 112)}


@pytest.fixture(scope="module", params=[Qwen25VLAdapter, Qwen3VLAdapter, InternVL3Adapter],
                ids=lambda c: c.family)
def adapter(request):
    torch.manual_seed(0)
    a = request.param.tiny(seed=0)
    if a.family == "internvl3":  # the library initialises these to zero: give positions something to do
        with torch.no_grad():
            a.tower.embeddings.position_embeddings.normal_()
            a.tower.embeddings.cls_token.normal_()
    return a


def frames_for(adapter, n, seed=0):
    h, w = SIZES[adapter.family]
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def patches(adapter, frames):
    t = adapter.geometry.temporal
    return [frames[i:i + t] for i in range(0, len(frames), t)]


def cat(results, attr="embeds"):
    return torch.cat([getattr(r, attr) for r in results])


@pytest.mark.parametrize("mode", ["isolated", "context"])
def test_every_token_reproduces_library(adapter, mode):
    """All tokens kept, temporal patches of two streams packed in one call == the library's full output of
    each whole video (so per-temporal-patch encoding == whole-video encoding)."""
    videos = {"a": frames_for(adapter, 4, seed=1), "b": frames_for(adapter, 2, seed=2)}
    requests = [EncodeRequest(s, p) for s, v in videos.items() for p in patches(adapter, v)]
    results = PrunedViT(adapter, mode).encode(requests)
    for stream, video in videos.items():
        ref, ref_deepstack = adapter.vision_reference(video)
        mine = [r for r in results if r.stream == stream]
        assert cat(mine).shape == ref.shape
        assert (cat(mine) - ref).abs().max() <= 1e-5
        for i, d in enumerate(ref_deepstack):
            assert (torch.cat([r.deepstack[i] for r in mine]) - d).abs().max() <= 1e-5
    assert all(torch.equal(r.token_index, torch.arange(r.grid[0] * r.grid[1])) for r in results)


def test_context_with_fresh_cache_equals_full(adapter):
    """Cache = the full encoding of this very frame: re-encoding k tokens against it gives their full output."""
    frames = patches(adapter, frames_for(adapter, 2, seed=3))[0]
    vit = PrunedViT(adapter, "context")
    full = vit.encode([EncodeRequest("s", frames)])[0]
    keep = np.random.default_rng(4).random(full.grid) < 0.3
    part = vit.encode([EncodeRequest("s", frames, keep)], full_grid=True)[0]
    assert torch.equal(part.token_index, torch.from_numpy(np.flatnonzero(keep)))
    assert (part.embeds - full.embeds[part.token_index]).abs().max() <= 1e-4
    assert (part.full_embeds - full.embeds).abs().max() <= 1e-4
    for d, fd in zip(part.deepstack, full.deepstack):
        assert (d - fd[part.token_index]).abs().max() <= 1e-4


def test_context_beats_isolated_on_a_changed_region(adapter):
    """Frame B = frame A with a changed block of tokens: encoding only those tokens against A's cache is closer to
    B's full encoding than encoding them alone (random weights: an ordering check, not an accuracy figure)."""
    a = patches(adapter, frames_for(adapter, 2, seed=5))[0]
    b = a.copy()
    tp = adapter.geometry.token_px
    b[:, :2 * tp, :2 * tp] = 255 - b[:, :2 * tp, :2 * tp]
    rows, cols = a.shape[1] // tp, a.shape[2] // tp
    keep = np.zeros((rows, cols), bool)
    keep[:2, :2] = True
    full_b = PrunedViT(adapter).encode([EncodeRequest("s", b)])[0].embeds[torch.from_numpy(np.flatnonzero(keep))]
    errors = {}
    for mode in ("isolated", "context"):
        vit = PrunedViT(adapter, mode)
        vit.encode([EncodeRequest("s", a)])
        errors[mode] = (vit.encode([EncodeRequest("s", b, keep)])[0].embeds - full_b).norm().item()
    assert errors["context"] < errors["isolated"]


def _stock_tower(adapter, batch):
    """The library's own Qwen tower run on the kept patches only, through its forward kwargs: each patch at its
    2-D position, attending within its temporal patch (full layers) or window."""
    import torch.nn.functional as F

    v = adapter.visual
    patches_per_segment = torch.bincount(batch.segment) * batch.merge ** 2
    kwargs = dict(grid_thw=torch.tensor([[1, r * batch.merge, c * batch.merge] for r, c in batch.grids]),
                  position_ids=torch.stack(batch.patch_coords(), dim=-1),
                  cu_seqlens=F.pad(patches_per_segment.cumsum(0), (1, 0)).to(torch.int32))
    if adapter.family == "qwen2_5_vl":
        window = batch.windows(v.window_size // v.spatial_merge_size // v.patch_size)
        order = torch.argsort(window, stable=True)
        _, counts = torch.unique_consecutive(window[order], return_counts=True)
        kwargs.update(window_index=order, cu_window_seqlens=F.pad((counts * batch.merge ** 2).cumsum(0), (1, 0))
                      .to(torch.int32))
    else:
        kwargs.update(zip(("interp_indices", "interp_weights"), adapter._vit_interp(batch)))
    out = v(batch.patches, **kwargs)
    return out.pooler_output, list(getattr(out, "deepstack_features", None) or [])


def test_own_loop_equals_stock_tower_on_subsets(adapter, monkeypatch):
    """Our block loop (batched windows) == the library's Qwen tower on any kept subset of two streams."""
    if not adapter.family.startswith("qwen"):
        pytest.skip("InternViT has no forward that takes a token subset")
    import codecsight.vision.encoder as encoder

    rng = np.random.default_rng(6)
    frames = patches(adapter, frames_for(adapter, 4, seed=6))
    grid = tuple(s // adapter.geometry.token_px for s in SIZES[adapter.family])
    requests = [EncodeRequest("s", frames[0], rng.random(grid) < 0.3),
                EncodeRequest("t", frames[1], rng.random(grid) < 0.6)]
    ours = PrunedViT(adapter).encode(requests)
    monkeypatch.setattr(encoder, "run_blocks", lambda adapter, batch, context: _stock_tower(adapter, batch))
    for x, y in zip(ours, PrunedViT(adapter).encode(requests)):
        assert len(x.embeds) == x.token_index.numel() > 0
        assert (x.embeds - y.embeds).abs().max() <= 1e-5
        assert len(x.deepstack) == len(y.deepstack)
        for d, e in zip(x.deepstack, y.deepstack):
            assert (d - e).abs().max() <= 1e-5


def test_packed_patches_of_one_stream_equal_sequential_calls(adapter):
    rng = np.random.default_rng(7)
    ps = patches(adapter, frames_for(adapter, 6, seed=7))
    grid = tuple(s // adapter.geometry.token_px for s in SIZES[adapter.family])
    keeps = [None, rng.random(grid) < 0.3, rng.random(grid) < 0.3]
    for mode in ("isolated", "context"):
        seq, packed = PrunedViT(adapter, mode), PrunedViT(adapter, mode)
        one_by_one = [seq.encode([EncodeRequest("s", p, k)], full_grid=True)[0] for p, k in zip(ps, keeps)]
        together = packed.encode([EncodeRequest("s", p, k) for p, k in zip(ps, keeps)], full_grid=True)
        for x, y in zip(one_by_one, together):
            assert torch.equal(x.token_index, y.token_index)
            assert (x.embeds - y.embeds).abs().max() <= 1e-5
            assert (x.full_embeds - y.full_embeds).abs().max() <= 1e-5


def test_caches_are_bounded_and_freed(adapter):
    frames = patches(adapter, frames_for(adapter, 2, seed=8))[0]
    grid = tuple(s // adapter.geometry.token_px for s in SIZES[adapter.family])
    keep = np.zeros(grid, bool)
    keep[0, 0] = True
    vit = PrunedViT(adapter, "context", max_streams=1)
    vit.encode([EncodeRequest("a", frames)])
    one = vit.cache_bytes
    assert one > 0
    vit.encode([EncodeRequest("b", frames)])
    assert vit.cache_bytes == one  # "a" was dropped
    # a stream without a cache cannot stand unchanged tokens in: it is encoded in full
    assert len(vit.encode([EncodeRequest("a", frames, keep)])[0].token_index) == grid[0] * grid[1]
    assert len(vit.encode([EncodeRequest("a", frames, keep)])[0].token_index) == 1
    vit.end_stream("a")
    assert vit.cache_bytes == 0


def test_nothing_kept_and_bad_input(adapter):
    frames = patches(adapter, frames_for(adapter, 2, seed=9))[0]
    grid = tuple(s // adapter.geometry.token_px for s in SIZES[adapter.family])
    vit = PrunedViT(adapter)
    vit.encode([EncodeRequest("s", frames)])
    empty = vit.encode([EncodeRequest("s", frames, np.zeros(grid, bool))], full_grid=True)[0]
    assert len(empty.embeds) == 0 and empty.full_embeds.shape[0] == grid[0] * grid[1]
    with pytest.raises(ConfigError):
        vit.encode([EncodeRequest("s", frames, np.ones((1, 1), bool))])
    with pytest.raises(ConfigError):
        PrunedViT(adapter, "bogus")


def test_qwen_short_temporal_patch_repeats_last_frame():
    adapter = Qwen25VLAdapter.tiny(seed=0)
    frame = np.random.default_rng(10).integers(0, 256, (1, 56, 84, 3), dtype=np.uint8)
    vit = PrunedViT(adapter)
    one, two = vit.encode([EncodeRequest("s", frame), EncodeRequest("t", np.repeat(frame, 2, axis=0))])
    assert torch.equal(one.embeds, two.embeds)
