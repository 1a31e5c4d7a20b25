"""The reference VLM: real class and special ids, a tokenizer that covers every standing question, a weights file
under 20 MB, and a training forward that is exactly the runtime's full-compute path."""
import inspect
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codecsight.models import load_adapter
from codecsight.models.base import BUNDLED_MODEL
from codecsight.reference.model import INPUT_HW, SPECIAL, build, grow, spatial_rope, spread
from codecsight.reference.targets import CLASSES
from codecsight.reference.train import (GREY, Example, Stream, answer_loss, answer_weights, colour_transform, draw_tint,
                                       initial_model, main, positive_weights, recolour_objects, save, stretch_contrast,
                                       target_mask, window_forward)
from codecsight.runtime import Engine, Question, method
from codecsight.runtime.pipeline import SYSTEM_PROMPT
from codecsight.synth.labels import QUESTIONS
from codecsight.vision.preprocess import video_pixel_values


@pytest.fixture(scope="module")
def ref():
    return build(seed=0)


def test_tokenizer_covers_questions_and_prompt(ref):
    unk = ref.tokenizer.unk_token_id
    for q in [*(q.text for q in QUESTIONS), SYSTEM_PROMPT]:
        ids = ref.encode(q)
        assert unk not in ids and ref.decode(ids).replace(" ?", "?").replace(" .", ".") == q
    assert ref.encode("<|vision_start|><|video_pad|>") == [SPECIAL["<|vision_start|>"], SPECIAL["<|video_pad|>"]]
    assert ref.config.video_token_id == 151656 and ref.config.vision_start_token_id == 151652
    yes, no = ref.yes_no_ids()
    assert yes != no and unk not in (yes, no)


def test_save_and_load_round_trip(ref, tmp_path):
    save(ref, str(tmp_path))
    assert os.path.getsize(tmp_path / "model.safetensors") < 20e6
    loaded = load_adapter(str(tmp_path))
    assert loaded.default_input_hw() == INPUT_HW and loaded.model.dtype == torch.float32
    assert loaded.config.codecsight["window"] == 16
    a = dict(ref.model.half().float().named_parameters())  # the stored precision
    for name, p in loaded.model.named_parameters():
        assert torch.equal(p, a[name]), name
    ref.model.float()


def test_training_forward_is_the_runtime_full_path(ref, clip_dir):
    """The loss sees exactly what `full` computes at inference: same layout, positions, KV and answer logits."""
    from clips import moving_square_clip

    from codecsight.signals import Sampling, sample_frames

    path = moving_square_clip(str(clip_dir / "square_ref.mp4"), n=100)  # 10 s: windows at 0 s and 2 s
    frames = np.stack([s.rgb for s in sample_frames(path, Sampling(2.0, INPUT_HW))])
    stream = Stream(frames, *[np.ones((len(frames) // 2, 6, 8), bool)] * 2)
    questions = [QUESTIONS[0].text, QUESTIONS[4].text]
    q_ids = {q: ref.chat_question(q) for q in questions}
    engine = Engine(ref, [method("full")], [Question(q, 16, 4) for q in questions], fps=2.0, answer_tokens=1)
    engine.add_stream(path, "s")
    events = []
    engine.run(events.append)
    assert len(events) == 4
    with torch.no_grad():
        for first, window in ((0, 0), (4, 1)):
            ex = Example("s", first, questions, [0, 0], ["colour", "kind"])
            fwd = window_forward(ref, stream, ex, "none", ref.chat_system(SYSTEM_PROMPT), q_ids)
            p = torch.softmax(fwd.yes_no, -1)[:, 0]
            got = [e.p_yes for e in events if e.window == window]
            assert got == pytest.approx(p.tolist(), abs=1e-5)
            # a plan that keeps everything leaves nothing to prune: both styles are the full path
            for pruning in ("cached", "dropped"):
                same = window_forward(ref, stream, ex, pruning, ref.chat_system(SYSTEM_PROMPT), q_ids)
                assert torch.equal(same.yes_no, fwd.yes_no) and torch.equal(same.hidden, fwd.hidden)


def test_training_forward_prunes_like_the_runtime(ref):
    """cached: every token reaches the LLM, unchanged ones carrying their last encoding; dropped: only the tokens
    the plan encodes do, in their own places, and those that changed within the last `linger` patches."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, *INPUT_HW, 3), dtype=np.uint8)
    keep = np.ones((4, 6, 8), bool)
    keep[1:, :, 2:] = False  # after the first patch only the two left columns change
    changed = keep.copy()
    changed[0, :, 4:] = False  # the first patch is a full encoding of which the right half did not change
    stream = Stream(frames, keep, changed)
    q = QUESTIONS[0].text
    ex = Example("s", 0, [q], [0], ["colour"], length=8)
    args = (ref.chat_system(SYSTEM_PROMPT), {q: ref.chat_question(q)})
    with torch.no_grad():
        runs = {p: window_forward(ref, stream, ex, p, *args) for p in ("none", "cached", "dropped")}
        with pytest.raises(ValueError, match="pruning"):
            window_forward(ref, stream, ex, "sometimes", *args)
    assert len(runs["none"].hidden) == len(runs["cached"].hidden) == 4 * 48
    # the runtime's default lingers one patch: the second patch still shows what changed in the first (the left
    # half), not what its full encoding merely refreshed
    assert len(runs["dropped"].hidden) == 48 + 24 + 2 * 12 == int(runs["dropped"].kept.sum())
    with torch.no_grad():
        at_once = window_forward(ref, stream, ex, "dropped", *args, linger=0)
        later = window_forward(ref, stream, Example("s", 2, [q], [0], ["colour"], length=6), "dropped", *args)
    assert len(at_once.hidden) == 48 + 3 * 12 == int(at_once.kept.sum())
    assert at_once.kept.tolist() == torch.from_numpy(keep).flatten().tolist()
    assert int(later.kept.sum()) == 24 + 2 * 12  # its first patch lingers from the one before the window
    assert torch.equal(runs["none"].vision, runs["dropped"].vision)  # the tower sees every frame in training
    assert not torch.allclose(runs["none"].yes_no, runs["cached"].yes_no)
    assert not torch.allclose(runs["cached"].yes_no, runs["dropped"].yes_no)


def test_grown_model_starts_as_the_trained_one():
    """Growing the LLM and the ViT (trained layers spread out, identity layers between, wider MLPs whose added units
    have zero output weights) changes no output at first, and the added units can learn."""
    trained = build(seed=2)
    with torch.no_grad():
        for p in trained.model.parameters():  # give every weight something beyond its initialisation
            p.add_(0.05 * torch.randn_like(p))
        deep = build(seed=1, text_layers=6, vision_layers=6)
        big = build(seed=1, text_layers=6, vision_layers=6, text_mlp=400, vision_mlp=300)
        grow(deep, trained)
        grow(big, trained)
        h = torch.randn(1, 12, trained.config.text_config.hidden_size)
        pos = torch.arange(12)[None].expand(3, 1, -1)
        text = lambda m: m.model.model.language_model(inputs_embeds=h, position_ids=pos).last_hidden_state
        frames = np.random.default_rng(0).integers(0, 256, (4, 112, 168, 3), dtype=np.uint8)
        vision = lambda m: m.vision_reference(frames)[0]
    assert len(big.language_model().layers) == 6 and len(big.model.model.visual.blocks) == 6
    assert torch.equal(text(deep), text(trained)) and torch.equal(vision(deep), vision(trained))
    # the wider MLPs sum over more (zero) terms, so only the order of the float additions may differ
    assert torch.allclose(text(big), text(trained), atol=1e-5, rtol=0)
    assert torch.allclose(vision(big), vision(trained), atol=1e-5, rtol=0)
    mlp = big.language_model().layers[0].mlp
    assert mlp.down_proj.weight.shape[1] == 400 and mlp.down_proj.weight[:, 144:].abs().sum() == 0
    assert mlp.up_proj.weight[144:].abs().sum() > 0  # random inputs: the added units are alive
    assert torch.equal(mlp.up_proj.weight[:144], trained.language_model().layers[0].mlp.up_proj.weight)
    # trained blocks 1 and 3 (full attention) sit at 1 and 4; the added 2 and 5 attend over the whole frame
    assert big.model.model.visual.fullatt_block_indexes == [1, 2, 4, 5]
    assert spread(4, 8) == [0, 2, 4, 6] and spread(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot grow"):
        grow(build(text_layers=2), trained)
    with pytest.raises(ValueError, match="attend differently"):  # same depth, other attention layout
        grow(build(vision_layers=6), build(seed=3, vision_layers=5))
    with pytest.raises(ValueError, match="does not fit"):  # a narrower MLP than the trained one
        grow(build(vision_mlp=64), trained)
    with pytest.raises(ValueError, match="does not fit"):  # nor a narrower LLM
        grow(build(text_hidden=36), trained)
    with pytest.raises(ValueError, match="12-dim heads"):
        build(text_hidden=50)
    for absurd in (0, -2, 1000):
        with pytest.raises(ValueError, match="text_layers"):
            build(text_layers=absurd)
        with pytest.raises(ValueError, match="vision_layers"):
            build(vision_layers=absurd)
        with pytest.raises(ValueError, match="text_mlp"):
            build(text_mlp=absurd * 10)
        with pytest.raises(ValueError, match="text_hidden"):
            build(text_hidden=absurd * 12)


def test_wider_llm_starts_as_the_trained_one():
    """A wider hidden state (48 -> 60: a fifth head, one key/value head per head) answers as the trained model did:
    the added dimensions stay zero through every layer, the logits and the ViT's first 48 outputs are the trained
    ones, and the added dimensions get gradients at once."""
    trained = build(seed=2)
    with torch.no_grad():
        for p in trained.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    wide = build(seed=1, text_layers=5, text_hidden=60)
    grow(wide, trained)
    cfg = wide.model.config.text_config
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (60, 5, 5)
    ids = torch.tensor([[151644, 3, 4, 5, 151652, 151653, 6, 151645]])
    pos = torch.arange(ids.shape[1])[None].expand(3, 1, -1)
    with torch.no_grad():
        logits = lambda m: m.model(input_ids=ids, position_ids=pos).logits
        assert (logits(wide) - logits(trained)).abs().max() <= 1e-5
        state = wide.model.model.language_model(input_ids=ids, position_ids=pos, output_hidden_states=True)
        assert all(h[..., 48:].abs().max() == 0 for h in state.hidden_states[:-1])
        frames = np.random.default_rng(0).integers(0, 256, (4, 112, 168, 3), dtype=np.uint8)
        got, want = wide.vision_reference(frames)[0], trained.vision_reference(frames)[0]
        assert got.shape[-1] == 60 and got[:, 48:].abs().max() == 0
        assert (got[:, :48] - want).abs().max() <= 1e-5
    wide.model(input_ids=ids, position_ids=pos).logits[0, -1, :8].sum().backward()
    layer = wide.language_model().layers[0]
    assert layer.self_attn.o_proj.weight.grad[48:].abs().sum() > 0  # the added dimensions learn
    assert layer.mlp.down_proj.weight.grad[48:].abs().sum() > 0


def test_wider_vit_starts_as_the_trained_one():
    """A wider ViT (64 -> 128: eight 16-dim heads), deeper and with wider MLPs too, encodes as the trained one did:
    queries, keys and values each land in their own third, the merger reads each merged patch's trained dimensions,
    the added dimensions stay zero in every patch, and they get gradients at once. Narrower or not whole heads:
    refused."""
    trained = build(seed=2)
    with torch.no_grad():
        for p in trained.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    wide = build(seed=1, vision_layers=6, vision_mlp=256, vision_hidden=128)
    grow(wide, trained)
    visual = wide.model.model.visual
    assert (visual.config.hidden_size, visual.config.num_heads, visual.blocks[0].attn.head_dim) == (128, 8, 16)
    frames = np.random.default_rng(0).integers(0, 256, (4, 112, 168, 3), dtype=np.uint8)
    seen = []
    hooks = [b.register_forward_hook(lambda m, i, out: seen.append(out)) for b in visual.blocks]
    with torch.no_grad():
        got, want = wide.vision_reference(frames)[0], trained.vision_reference(frames)[0]
    for h in hooks:
        h.remove()
    assert len(seen) == 6 and all(h[..., 64:].abs().max() == 0 for h in seen)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    pixels, grid = video_pixel_values(frames, wide.geometry)
    visual(pixels, grid_thw=torch.tensor([grid])).pooler_output.square().sum().backward()
    assert visual.patch_embed.proj.weight.grad[64:].abs().sum() > 0  # the added dimensions learn
    assert visual.blocks[0].mlp.down_proj.weight.grad[64:].abs().sum() > 0
    with pytest.raises(ValueError, match="16-dim heads"):
        build(vision_hidden=72)
    with pytest.raises(ValueError, match="does not fit"):
        grow(build(vision_hidden=32), trained)


def test_runtime_vit_encodes_a_grown_tower_as_the_library_does():
    """A grown ViT has full-attention blocks side by side (1, 2, 4, 5), a layout no stock config has, and here a width
    no stock config has (96, six heads): the runtime's own ViT loop, every token kept, still equals the library's
    tower, once the added blocks do something."""
    from codecsight.vision.encoder import EncodeRequest, PrunedViT

    deep = build(seed=1, vision_layers=6, vision_hidden=96)
    with torch.no_grad():
        for p in deep.model.model.visual.parameters():
            p.add_(0.05 * torch.randn_like(p))
    frames = np.random.default_rng(1).integers(0, 256, (4, 112, 168, 3), dtype=np.uint8)
    want, _ = deep.vision_reference(frames)
    for mode in ("isolated", "context"):
        got = PrunedViT(deep, mode).encode([EncodeRequest("s", frames[i:i + 2]) for i in (0, 2)])
        assert (torch.cat([r.embeds for r in got]) - want).abs().max() <= 1e-5


def _angle(adapter, axis: int, tokens: int) -> torch.Tensor:
    """Rotary angle per frequency pair between a token at 0 and one at `tokens - 1` along axis (0 t, 1 h, 2 w)."""
    pos = torch.zeros(3, 2, dtype=torch.long)
    pos[axis, 1] = tokens - 1
    cos, sin = adapter.rotary(torch.zeros(1, 2, 1), pos)
    half = cos.shape[-1] // 2
    return torch.atan2(sin[0, 1, :half], cos[0, 1, :half]).abs()


def test_spatial_rope_lets_attention_tell_columns_apart(tmp_path):
    """With 12-dim heads and mrope sections [2, 2, 2], width gets the two lowest of six frequencies: at the config's
    base 1e4 the last of 8 columns is rotated at most 0.02 rad from the first. spatial_rope sets one height and one
    width pair to the radians asked, keeps the other four (one slow pair per section stays a content channel), and
    scales no attention. A continued model keeps its rotary unless told otherwise, and its weights either way."""
    plain, spatial = build(), build(rope=spatial_rope(0.5, 0.4))
    assert _angle(plain, 2, 8).max() < 0.02
    assert _angle(spatial, 2, 8).tolist() == pytest.approx([0, 0, 0, 0, 7 * 0.4, 7 * 4.6416e-4], abs=1e-5)
    assert _angle(spatial, 1, 6).tolist() == pytest.approx([0, 0, 5 * 0.5, 5 * 0.01, 0, 0], abs=1e-5)
    assert torch.allclose(_angle(spatial, 0, 3), _angle(plain, 0, 3))
    assert spatial.language_model().rotary_emb.attention_scaling == 1.0
    save(spatial, str(tmp_path))
    kept = initial_model(0, None, None, str(tmp_path))
    plain_again = initial_model(0, None, plain.config.text_config.rope_parameters, str(tmp_path))
    assert torch.allclose(_angle(kept, 2, 8), _angle(spatial, 2, 8))
    assert torch.allclose(_angle(plain_again, 2, 8), _angle(plain, 2, 8))
    for name, p in plain_again.model.named_parameters():
        assert torch.equal(p, dict(kept.model.named_parameters())[name]), name
    for absurd in ((0.0, 0.4), (0.5, -1.0), (0.5, 4.0)):
        with pytest.raises(ValueError, match="radians per token"):
            spatial_rope(*absurd)


def test_input_size_is_carried_by_a_continued_model(tmp_path):
    """The input size is config, not a weight: a continued model keeps its init's unless --input-size says
    otherwise, the weights stay the same either way, and the runtime reads the saved size."""
    save(build(), str(tmp_path / "a"))
    larger = initial_model(0, None, None, str(tmp_path / "a"), (224, 308))
    assert larger.default_input_hw() == (224, 308) and initial_model(0, None, None, None).default_input_hw() == INPUT_HW
    save(larger, str(tmp_path / "b"))
    kept = initial_model(0, None, None, str(tmp_path / "b"))
    assert kept.default_input_hw() == (224, 308) and load_adapter(str(tmp_path / "b")).default_input_hw() == (224, 308)
    for name, p in kept.model.named_parameters():
        assert torch.equal(p, dict(larger.model.named_parameters())[name]), name


def test_training_saves_the_step_keep_names(tmp_path, monkeypatch):
    """The trainer end to end on a tiny generated split: it trains, checkpoints, and at the end saves the weights
    --keep names, the last step's (what every stage since session 11 shipped) or the probe's best (best.pt); the
    answer loss is weighted with the --type-weight factors."""
    import codecsight.reference.train as train
    from codecsight.reference.train import main
    from codecsight.synth.cli import generate

    factors = []  # what each training window's answer weights were given, however the trainer passes it
    weigh, signature = train.answer_weights, inspect.signature(train.answer_weights)
    monkeypatch.setattr(train, "answer_weights", lambda *a, **k: factors.append(
        signature.bind(*a, **k).arguments.get("type_weight")) or weigh(*a, **k))

    data, init, out = (str(tmp_path / k) for k in ("data", "init", "run"))
    generate(data, seed=1, minutes=0.25, split="train", video_minutes=0.25, progress=False)  # 4 windows
    start = build()  # the init, and below a planted best step that is not the last
    save(start, init)
    run = ["--data", data, "--heldout", data, "--init", init, "--out", out, "--batch", "2", "--curriculum", "",
           "--eval-every", "1000", "--minutes", "0.05", "--type-balance", "--type-weight", "fall=3,touch=2",
           "--reverse", "0.5"]
    assert main([*run, "--save", str(tmp_path / "first")]) == 0
    state = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=False)
    assert state["step"] >= 1
    assert factors and all(f == {"fall": 3.0, "touch": 2.0} for f in factors)
    torch.save(start.model.state_dict(), os.path.join(out, "best.pt"))
    for keep in ("last", "best"):  # resumed past its budget: no step more
        assert main([*run, "--keep", keep, "--save", str(tmp_path / keep)]) == 0
    assert torch.load(os.path.join(out, "checkpoint.pt"), weights_only=False)["step"] == state["step"]
    saved = {k: dict(load_adapter(str(tmp_path / k)).model.named_parameters()) for k in ("last", "best")}
    start = dict(start.model.named_parameters())
    for name, p in start.items():
        assert torch.equal(saved["last"][name].half(), state["model"][name].half()), name
        assert torch.equal(saved["best"][name].half(), p.detach().half()), name
    assert any(not torch.equal(saved["last"][n].half(), p.detach().half()) for n, p in start.items())


def test_place_targets_are_the_llm_position_ids(ref):
    """`--place` reads each visual token's (row, col) as Segment.full_coords repeated per temporal patch; in the
    layout the LLM runs on, a token's height and width position ids are exactly that row and column."""
    from codecsight.prefill.window import Segment, Window, build_layout

    grid, patches = ref.geometry.grid(*INPUT_HW), 3
    coords = Segment.full_coords(*grid)
    segs = [Segment(i, torch.zeros(len(coords), ref.config.text_config.hidden_size), coords, grid)
            for i in range(patches)]
    lay = build_layout(ref, Window(segs), ref.chat_system(SYSTEM_PROMPT))
    pos = lay.positions[1:, lay.visual]
    assert torch.equal((pos - pos.min(1, keepdim=True).values).T, coords.repeat(patches, 1))


def test_colour_transform_keeps_shape_and_changes_colour():
    """The training recolouring: no change at hue 0, saturation 1 and gain 1; grey levels at saturation 0; a third of
    a turn takes red to green; and the mean of the channels is only scaled by the gain, so the luminance pattern
    (shapes, textures) stays."""
    red, grey = np.array([255.0, 0, 0]), np.array([90.0, 90, 90])
    assert np.allclose(colour_transform(), np.eye(3))
    assert np.allclose(GREY @ red, [85, 85, 85])
    assert np.allclose(colour_transform(2 * np.pi / 3) @ red, [0, 255, 0])
    assert np.allclose(colour_transform(1.0, 0.5, 1.3) @ grey, 1.3 * grey)  # greys are only brightened
    assert np.allclose(GREY @ colour_transform(-2.0, 0.3, 0.9), 0.9 * GREY)


def test_recolouring_draws_its_shares_and_reaches_the_heldout_white():
    """Grey and recoloured windows come in the shares asked for, and some recoloured training yellow looks like the
    held-out white (within 12 grey levels per channel): no training person is light, a held-out one is white."""
    from codecsight.synth.scene import COLOURS

    rng = random.Random(0)
    tints = [draw_tint(rng, 0.1, 0.7) for _ in range(4000)]
    assert abs(sum(t is GREY for t in tints) / 4000 - 0.1) < 0.02
    assert abs(sum(t is None for t in tints) / 4000 - 0.2) < 0.02
    yellow, white = np.array(COLOURS["yellow"], float), np.array(COLOURS["white"], float)
    near = [t for t in tints if t is not None and np.abs(np.clip(t @ yellow, 0, 255) - white).max() < 12]
    assert len(near) >= 10
    assert all(draw_tint(rng, 0.0, 0.0) is None for _ in range(100))


def test_contrast_stretches_about_the_mean_and_keeps_grey_levels_in_range():
    """A white object on a mid-grey background stands out further at a factor above 1, less below; 1 changes
    nothing; values stay 8-bit."""
    frames = np.full((2, 4, 4, 3), 110, np.uint8)
    frames[:, 1:3, 1:2] = (235, 235, 230)
    def gap(f):
        return f[0, 1, 1].astype(float).mean() - f[0, 0, 0].astype(float).mean()

    low, high = stretch_contrast(frames, 0.6), stretch_contrast(frames, 1.8)
    assert low.dtype == high.dtype == np.uint8
    assert abs(gap(low) - 0.6 * gap(frames)) < 1
    assert gap(high) > 1.2 * gap(frames) and high[0, 1, 1].max() == 255  # clipped, not wrapped
    assert np.array_equal(stretch_contrast(frames, 1.0), frames)
    m = frames.astype(float).mean()
    assert abs(stretch_contrast(frames, 0.6).astype(float).mean() - m) < 1  # the mean grey level stays


def test_recolour_objects_is_the_scene_rendered_in_the_new_colours():
    """Per-object recolouring of rendered samples equals rendering the scene with the objects in the colours it drew
    (same noise and tones, an occluding pair drawn in the renderer's order), the background is untouched, and no
    object gets a colour near a held-out pair's for its kind."""
    from codecsight.reference.targets import scene_track
    from codecsight.synth.scene import (HELDOUT_COMBOS, UNSEEN_RADIUS, Obj, Renderer, Scene, Style, colour_rgb,
                                        free_colour)

    style = Style(320, 240, 10, "blobs", (128, 122, 112), 2.0, 0.0, 60.0, 0.0)
    person = Obj(0, "person", "red", 60.0, [(0.0, 120.0, 200.0, 0.0), (4.0, 200.0, 200.0, 0.0)])
    box = Obj(1, "box", "yellow", 50.0, [(0.0, 150.0, 215.0, 0.0), (2.0, 150.0, 215.0, 0.0), (3.0, 150.0, 215.0, 90.0),
                                        (4.0, 150.0, 215.0, 90.0)])  # nearer (larger y): drawn over the person
    scene = Scene(style, 4.0, [person, box])
    track = scene_track(scene, 2.0, 6, 8)

    def samples(sc):  # resized as recolour_objects resizes its change (the decoder's bicubic differs slightly)
        r = Renderer(sc, np.random.default_rng(5))
        native = torch.from_numpy(np.stack([r.frame(round(t * 10)) for t in track.times])).permute(0, 3, 1, 2)
        small = torch.nn.functional.interpolate(native.float(), size=INPUT_HW, mode="area")
        return small.permute(0, 2, 3, 1).round().numpy().astype(np.uint8)

    frames = samples(scene)
    out = recolour_objects(frames, track, 0, np.random.default_rng(7))
    assert out.shape == frames.shape and out.dtype == np.uint8
    drawn = np.random.default_rng(7)
    new = [Obj(o.id, o.kind, free_colour(drawn, o.kind), o.scale, o.keys) for o in scene.objects]
    expected = samples(Scene(style, 4.0, new))
    diff = np.abs(out.astype(int) - expected)
    assert diff.max() <= 2 and diff.mean() < 0.1  # rounding, and the noise clipped at 0/255 in one of them
    moved = np.abs(out.astype(int) - frames).max(-1) > 0
    assert moved.any(1).any(1).all()  # every sample shows an object
    assert not moved[:, :, :60].any() and not moved[:, :95].any()  # the left and the top show none
    assert np.array_equal(recolour_objects(frames, track, 0, np.random.default_rng(7)), out)
    rng = np.random.default_rng(0)
    for kind in ("person", "box"):
        held = [np.array(colour_rgb(c)) for c, k in HELDOUT_COMBOS if k == kind]
        for _ in range(300):
            rgb = np.array(colour_rgb(free_colour(rng, kind)))
            assert min(np.linalg.norm(rgb - c) for c in held) >= UNSEEN_RADIUS


def test_absurd_training_shares_are_refused():
    for bad in (["--grey", "0.7", "--recolour", "0.5"], ["--recolour", "-0.1"], ["--pruned", "1.5"],
                ["--end-loss", "-1"], ["--dropped", "1.2"], ["--dropped", "-0.1"],
                ["--pruned", "-0.2"], ["--kind-from-shape", "--grey", "0", "--recolour", "0"], ["--events", "-1"],
                ["--spatial-rope", "0.5"], ["--spatial-rope", "0,0.4"], ["--spatial-rope", "a,b"],
                ["--place", "-1"], ["--contrast", "1.5"], ["--contrast", "2,1"], ["--contrast", "0,1"],
                ["--contrast", "a,b"], ["--object-colour", "1.5"], ["--object-colour", "-0.5"],
                ["--input-size", "224x300"], ["--input-size", "28x28"], ["--input-size", "224"],
                ["--input-size", "axb"], ["--keep", "newest"], ["--type-weight", "fell=2"],
                ["--type-weight", "fall=0"], ["--type-weight", "fall=x"], ["--type-weight", "fall"],
                ["--focal", "-1"], ["--focal", "nan"], ["--focal", "50"], ["--reverse", "1.5"], ["--reverse", "-0.1"],
                ["--edges", "1.5"], ["--edges", "-0.1"], ["--edges", "0.5", "--edge-types", "touch,fell"],
                ["--edge-balance"], ["--pos-weight-cap", "0.5"], ["--pos-weight-cap", "nan"]):
        with pytest.raises(SystemExit):
            main(["--data", "x", "--heldout", "y", *bad])


def test_absurd_depths_are_refused_before_any_data_loads(tmp_path, capsys):
    """Out of range, or fewer layers than --init has (a trained model is grown, never cut): a usage error, and the
    data (which does not exist here) is never read."""
    for bad, why in ((["--vision-layers", "0"], "vision_layers must be within 1..64"),
                     (["--text-layers", "100"], "text_layers must be within 1..64"),
                     (["--init", BUNDLED_MODEL, "--vision-layers", "2"], "cannot grow 4 trained layers into 2"),
                     (["--init", BUNDLED_MODEL, "--text-layers", "3"], "cannot grow 4 trained layers into 3")):
        with pytest.raises(SystemExit) as e:
            main(["--data", "x", "--heldout", "y", "--out", str(tmp_path), *bad])
        assert e.value.code == 2 and why in capsys.readouterr().err


def test_type_balance_weighs_each_asked_type_alike():
    """Four colour questions and one fall: each colour answer weighs a quarter; withheld ones count for nothing."""
    types = ["colour"] * 4 + ["kind", "kind", "fall"]
    answers = [1, 0, 0, 0, 1, 0, 1]
    pos = {"colour": 2.0, "kind": 3.0, "fall": 4.0}
    w = answer_weights(types, answers, pos, blind=False, type_balance=True)
    assert w.tolist() == [0.5, 0.25, 0.25, 0.25, 1.5, 0.5, 4.0]
    w = answer_weights(types, answers, pos, blind=True, type_balance=True)  # colour not asked: kind halves only
    assert w.tolist() == [0.0] * 4 + [1.5, 0.5, 4.0]
    assert answer_weights(types, answers, pos, blind=True).tolist() == [0.0] * 4 + [3.0, 1.0, 4.0]
    # a factor per type on top: fall triples, unnamed types keep their weight
    w = answer_weights(types, answers, pos, blind=False, type_balance=True, type_weight={"fall": 3.0, "kind": 0.5})
    assert w.tolist() == [0.5, 0.25, 0.25, 0.25, 0.75, 0.25, 12.0]


def test_positive_weights_balance_each_type_up_to_the_cap():
    """neg/pos per type, never under 1 (a type mostly Yes is not balanced down) and never over the cap."""
    counts = {"fall": [900, 100], "touch": [55, 45], "enter": [30, 70], "stop": [10, 0]}
    assert positive_weights(counts) == {"fall": 6.0, "touch": 55 / 45, "enter": 1.0, "stop": 6.0}
    assert positive_weights(counts, cap=1.25) == {"fall": 1.25, "touch": 55 / 45, "enter": 1.0, "stop": 1.25}
    assert set(positive_weights(counts, cap=1.0).values()) == {1.0}


def test_focal_answer_loss_spares_confident_right_answers():
    """At 0 it is the plain weighted cross-entropy; at 2 a confidently right answer keeps almost none of its loss and
    a wrong one most of it, and withheld questions (weight 0) count for nothing either way."""
    yes_no = torch.tensor([[4.0, -4.0], [-1.0, 1.0], [0.0, 0.0], [9.0, -9.0]])  # P(Yes) 1.0, 0.12, 0.5, 1.0
    answers, weight = [1, 1, 0, 0], torch.tensor([1.0, 2.0, 1.0, 0.0])
    ce = F.cross_entropy(yes_no, torch.tensor([0, 0, 1, 1]), reduction="none")
    plain = answer_loss(yes_no, answers, weight)
    assert torch.allclose(plain, (ce * weight).sum() / 4.0)
    per = [answer_loss(yes_no[i:i + 1], answers[i:i + 1], torch.ones(1), 2.0) / ce[i] for i in range(3)]
    assert per[0] < 1e-6 and 0.75 < per[1] < 0.8 and abs(per[2] - 0.25) < 1e-6
    assert answer_loss(yes_no, answers, weight, 2.0) < plain
    assert torch.isfinite(answer_loss(yes_no, answers, weight, 2.0))
    # the withheld fourth answer, wrong at P(Yes) 1.0, changes nothing with or without focal weighting
    for focal in (0.0, 2.0):
        assert torch.allclose(answer_loss(yes_no, answers, weight, focal),
                              answer_loss(yes_no[:3], answers[:3], weight[:3], focal))


def test_kind_from_shape_asks_kind_only_where_colour_was_taken_away():
    """Natural colours: colour, events and (by default) kind are asked; with --kind-from-shape kind and position are
    not, in answers and in per-token targets. Grey or recoloured: colour is not asked, kind is, weighted by class
    balance."""
    types, answers = ["colour", "kind", "position", "enter"], [1, 1, 0, 1]
    pos = {"colour": 2.0, "kind": 3.0, "position": 4.0, "enter": 1.5}
    assert answer_weights(types, answers, pos, blind=False).tolist() == [2.0, 3.0, 1.0, 1.5]
    assert answer_weights(types, answers, pos, blind=False, kind_from_shape=True).tolist() == [2.0, 0.0, 0.0, 1.5]
    for shape in (False, True):
        assert answer_weights(types, answers, pos, blind=True, kind_from_shape=shape).tolist() == [0.0, 3.0, 1.0, 1.5]
    on = lambda mask: {c for c, m in zip(CLASSES, mask.tolist()) if m}
    assert on(target_mask(False)) == set(CLASSES) - {"touching"}
    assert on(target_mask(False, contact=True)) == set(CLASSES)
    assert on(target_mask(False, True)) == {"red", "green", "blue", "yellow", "white", "purple", "moving", "fallen"}
    assert on(target_mask(True, True)) == on(target_mask(True)) == {"person", "box", "ball", "car", "moving", "fallen"}


@pytest.mark.skipif(not os.path.isfile(os.path.join(BUNDLED_MODEL, "config.json")), reason="not trained yet")
def test_bundled_model_loads_offline():
    ad = load_adapter()
    # trained at 224x308 since session 23 (a fresh model's default stays INPUT_HW); the runtime reads it from config
    assert ad.family == "qwen2_5_vl" and ad.default_input_hw() == (224, 308)
    assert os.path.getsize(os.path.join(BUNDLED_MODEL, "model.safetensors")) < 20e6


def test_token_targets_mark_what_lies_under_each_token():
    """A red ball parked in one token, then rolling right and a box falling over: the targets follow the scene."""
    from codecsight.reference.targets import CLASSES, token_targets
    from codecsight.synth.scene import Obj, Scene, Style

    style = Style(320, 240, 10, "blobs", (128, 122, 112), 2.0, 0.0, 60.0, 0.0)
    ball = Obj(0, "ball", "red", 40.0, [(0.0, 60.0, 100.0, 0.0), (2.0, 60.0, 100.0, 0.0), (4.0, 260.0, 100.0, 0.0)])
    box = Obj(1, "box", "blue", 60.0, [(0.0, 200.0, 220.0, 0.0), (2.0, 200.0, 220.0, 0.0), (3.0, 200.0, 220.0, 90.0)])
    t = token_targets(Scene(style, 4.0, [ball, box]), rate=2.0, rows=6, cols=8)
    assert t.shape == (4, 48, len(CLASSES))
    c = {k: t[..., i].reshape(4, 6, 8) for i, k in enumerate(CLASSES)}
    # 0-1 s: the ball (22 px wide, 22 px tall, anchored at its bottom centre (60, 100)) lies in token row 2, col 1
    assert c["red"][0, 2, 1] == 1 and c["ball"][0, 2, 1] == 1 and c["red"][0].sum() == 1
    assert c["moving"][0].sum() == 0 and c["green"].sum() == 0 and c["car"].sum() == 0
    # 3-4 s: it rolls right (50 px per sample) and is marked moving where it is, not where it was
    assert c["moving"][3, 2, 5:7].any() and c["red"][3, 2, 1] == 0
    assert c["blue"][0].sum() >= 1 and c["fallen"][0].sum() == 0 and c["fallen"][3].sum() >= 1


def test_touching_target_marks_objects_in_contact_by_the_touch_rule():
    """"touching" (--contact-target) is on under both objects of a pair in contact, off under a lone object and
    before contact, and 0.5 (a soft target) where the touch rule calls the gap borderline (1-5 px)."""
    from codecsight.reference.targets import CLASSES, token_targets
    from codecsight.synth.scene import Obj, Scene, Style

    style = Style(320, 240, 10, "blobs", (128, 122, 112), 2.0, 0.0, 60.0, 0.0)
    w = 0.62 * 60.0  # a box's width at scale 60
    keys = lambda x0, x1, gap: [(0.0, x0, 200.0, 0.0), (1.0, x0, 200.0, 0.0), (2.0, x1 - gap / 2, 200.0, 0.0),
                                (4.0, x1 - gap / 2, 200.0, 0.0)]
    left = Obj(0, "box", "red", 60.0, keys(60.0, 160.0 - w / 2, 1.0))
    right = Obj(1, "box", "blue", 60.0, [(t, 320.0 - x, y, a) for t, x, y, a in keys(60.0, 160.0 - w / 2, 1.0)])
    lone = Obj(2, "ball", "red", 40.0, [(0.0, 290.0, 60.0, 0.0), (4.0, 290.0, 60.0, 0.0)])
    near = Obj(3, "box", "red", 60.0, [(t, x, 120.0, a) for t, x, _, a in keys(60.0, 100.0 - w / 2, 3.0)])
    near2 = Obj(4, "box", "blue", 60.0, [(t, 200.0 - x, 120.0, a) for t, x, _, a in keys(60.0, 100.0 - w / 2, 3.0)])
    t = token_targets(Scene(style, 4.0, [left, right, lone, near, near2]), rate=2.0, rows=6, cols=8)
    touching = t[..., CLASSES.index("touching")].reshape(4, 6, 8)
    # 0-1 s apart; from 2 s the first pair stands 1 px apart (contact) at token row 4, where it meets (x = 160)
    assert touching[0].max() == 0 and touching[2:, 4, 3:5].min() == 1
    assert touching[:, 1, 7].max() == 0  # the lone ball (row 1, col 7) touches nothing
    assert touching[2:, 2, 2].max() == 0.5  # the second pair stands 3 px apart (x = 100, row 2): borderline


def test_anycolour_streams_train_without_colour(ref, tmp_path):
    """A stream of split `anycolour` loads as colour-blind (training withholds its colour answers and targets), and
    a `train` stream does not; decoded samples and the plan's masks are cached beside the video, and a cache
    without the change masks (session 9 and before) or planned under another change rule or cut short is rebuilt."""
    from codecsight.reference.train import load_streams
    from codecsight.signals import ChangeRule
    from codecsight.synth.cli import generate

    for split in ("train", "anycolour"):
        generate(str(tmp_path / split), seed=1, minutes=0.1, split=split, video_minutes=0.1, progress=False)
        (stream,) = load_streams(str(tmp_path / split), ref.geometry).values()
        assert stream.any_colour == (split == "anycolour")
        assert len(stream.frames) == 12 and stream.targets.shape[:2] == (6, 48)
        assert stream.changed.shape == stream.keep.shape == (6, 6, 8) and stream.keep[0].all()
        assert (stream.keep | ~stream.changed).all() and not stream.changed[1:].all()
    (cache,) = tmp_path.glob("anycolour/*.npz")
    assert isinstance(stream.frames, np.memmap) and "frames" not in np.load(cache)  # the samples: a mapped .npy
    again = load_streams(str(tmp_path / "anycolour"), ref.geometry)[str(tmp_path / "anycolour/stream_0000.mp4")]
    assert all(np.array_equal(getattr(again, k), getattr(stream, k)) for k in ("frames", "keep", "changed"))
    np.savez(cache, frames=stream.frames, keep=stream.keep, changed=stream.changed, rule=np.array(repr(ChangeRule())))
    os.remove(str(cache)[:-4] + ".npy")  # a one-file cache of sessions 10-27: split in two, not planned again
    split = load_streams(str(tmp_path / "anycolour"), ref.geometry)[str(tmp_path / "anycolour/stream_0000.mp4")]
    assert isinstance(split.frames, np.memmap) and np.array_equal(split.frames, stream.frames)
    assert "frames" not in np.load(cache) and os.path.getmtime(cache) >= os.path.getmtime(str(cache)[:-4] + ".npy")
    np.savez(cache, frames=stream.frames[:2], keep=stream.keep[:1])  # an old cache, and not this video's
    rebuilt = load_streams(str(tmp_path / "anycolour"), ref.geometry)[str(tmp_path / "anycolour/stream_0000.mp4")]
    assert np.array_equal(rebuilt.changed, stream.changed) and len(rebuilt.frames) == 12
    np.savez(cache, frames=stream.frames, keep=~stream.keep, changed=~stream.changed,
             rule=np.array(repr(ChangeRule(sub_blocks=1))))  # whole, but planned under another rule
    rebuilt = load_streams(str(tmp_path / "anycolour"), ref.geometry)[str(tmp_path / "anycolour/stream_0000.mp4")]
    assert np.array_equal(rebuilt.changed, stream.changed) and np.array_equal(rebuilt.keep, stream.keep)
    samples = Path(str(cache)[:-4] + ".npy")
    for cut in (cache, samples):  # cut short (session 32: a second run was rewriting it): planned again
        cut.write_bytes(cut.read_bytes()[:1000])
        rebuilt = load_streams(str(tmp_path / "anycolour"), ref.geometry)[str(tmp_path / "anycolour/stream_0000.mp4")]
        assert np.array_equal(rebuilt.keep, stream.keep) and np.array_equal(rebuilt.frames, stream.frames)
    assert not list(tmp_path.glob("*/*.tmp"))  # written beside and moved into place
    (larger,) = load_streams(str(tmp_path / "train"), ref.geometry, (224, 308)).values()  # another input size
    assert larger.frames.shape[1:] == (224, 308, 3) and larger.keep.shape == (6, 8, 11)
    assert larger.targets.shape[:2] == (6, 88) and len(list(tmp_path.glob("train/*.npz"))) == 2


def test_step_vocabulary_changes_no_value_or_gradient(ref):
    """Gathering the rows a training step reads once (train.StepVocabulary) gives the forward and the embedding
    table's gradient of reading the whole table at every lookup; an id outside the gathered rows is refused."""
    from codecsight.reference.train import step_vocabulary

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (4, *INPUT_HW, 3), dtype=np.uint8)
    stream = Stream(frames, *[np.ones((2, 6, 8), bool)] * 2)
    qs = [QUESTIONS[0].text, QUESTIONS[-1].text]
    ex = Example("s", 0, qs, [1, 0], ["colour", "fall"], length=4)
    args = (ref.chat_system(SYSTEM_PROMPT), {q: ref.chat_question(q) for q in qs})
    table = ref.language_model().embed_tokens.weight
    grads, outs = [], []
    for gathered in (False, True):
        ref.model.zero_grad()
        if gathered:
            with step_vocabulary(ref, ref.tokenizer.get_vocab().values()) as vocab:
                fwd = window_forward(ref, stream, ex, "none", *args, answers=ex.answers)
                loss = fwd.yes_no.sum() + (fwd.end @ table.T).logsumexp(-1).sum()
                with pytest.raises(KeyError, match="outside"):
                    vocab(torch.tensor([1000]))
        else:
            fwd = window_forward(ref, stream, ex, "none", *args, answers=ex.answers)
            loss = fwd.yes_no.sum() + (fwd.end @ table.T).logsumexp(-1).sum()
        loss.backward()
        grads.append(table.grad.clone())
        outs.append(fwd.yes_no.detach())
    assert ref.language_model().embed_tokens.weight is table  # restored after the block
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-7) and grads[1].abs().sum() > 0
    ref.model.zero_grad()


def test_event_targets_tell_each_token_what_happened_since_the_window_began():
    """A box falls over at 2-3 s: in a window from 0 s its tokens say "fall" from the patch where it lies, never
    before and nowhere else; in a window that starts with it lying nothing fell. A ball rolls in from the left and
    stops: "enter" from the patch it is in view, "stop" once it stood still for two intervals."""
    from codecsight.reference.targets import EVENTS, event_targets, scene_track
    from codecsight.synth.scene import Obj, Scene, Style

    style = Style(320, 240, 10, "blobs", (128, 122, 112), 2.0, 0.0, 60.0, 0.0)
    box = Obj(0, "box", "blue", 60.0, [(0.0, 200.0, 220.0, 0.0), (2.0, 200.0, 220.0, 0.0), (3.0, 200.0, 220.0, 90.0),
                                       (8.0, 200.0, 220.0, 90.0)])
    ball = Obj(1, "ball", "red", 40.0, [(0.0, -20.0, 100.0, 0.0), (1.5, 70.0, 100.0, 0.0), (8.0, 70.0, 100.0, 0.0)])
    track = scene_track(Scene(style, 8.0, [box, ball]), rate=2.0, rows=6, cols=8)
    ev = {e: event_targets(track, 0, 8)[..., i].reshape(4, 6, 8) for i, e in enumerate(EVENTS)}
    assert ev["fall"][:3].sum() == 0 and ev["fall"][3].sum() >= 1  # lying from sample 6 (3 s)
    assert (ev["fall"][3] <= track.cover[0, 6:8].reshape(2, 6, 8).any(0)).all()  # only where the box lies
    assert ev["enter"][0].sum() >= 1 and ev["enter"][3, 2, 1] == 1 and ev["enter"][3, 5, 6] == 0  # ball, not box
    assert ev["stop"][:2].sum() == 0 and ev["stop"][2:, 2, 1].all()  # moving to 1.5 s, still at 2.0 and 2.5 s
    assert ev["touch"].sum() == 0
    later = event_targets(track, 8, 8)  # samples 8-15 (4-8 s): the box lies throughout, the ball stands
    assert later.shape == (4, 48, len(EVENTS)) and later.sum() == 0


def test_object_events_at_a_window_end_are_its_labels():
    """On a generated stream, every labelled window's event answer (enter, stop, touch, fall) is the max over
    objects of their event flags at its last sample: the targets and the labels are one rule."""
    from codecsight.reference.targets import EVENTS, object_events, scene_track
    from codecsight.synth.labels import window_labels
    from codecsight.synth.scene import make_scene

    scene = make_scene(np.random.default_rng(7), "train", 120.0)
    track = scene_track(scene, rate=2.0, rows=6, cols=8)
    seen = {e: [0, 0] for e in EVENTS}
    for r in window_labels(scene, 2.0, 16, 4):
        if r["type"] in EVENTS:
            got = object_events(track, round(r["start"] * 2), 16)[:, -1, EVENTS.index(r["type"])].max()
            assert got == (r["answer"] == "Yes"), r
            seen[r["type"]][r["answer"] == "Yes"] += 1
    assert all(no > 0 and yes > 0 for no, yes in seen.values()), seen


def _generated_windows(seconds: float):
    """A generated training stream's scene track (6x8 tokens) and its labelled runtime windows, as training groups
    them (video "d/v.mp4")."""
    from codecsight.reference.targets import scene_track
    from codecsight.reference.train import group_windows
    from codecsight.synth.labels import window_labels
    from codecsight.synth.scene import make_scene

    scene = make_scene(np.random.default_rng(7), "train", seconds)
    windows = group_windows(({**r, "video": "v.mp4"} for r in window_labels(scene, 2.0, 16, 4)), "d", 2.0)
    return scene_track(scene, rate=2.0, rows=6, cols=8), windows


def test_a_window_shown_backwards_is_answered_for_the_reversed_samples():
    """--reverse: on a generated stream, every labelled window shown backwards answers "enter" as the forward window
    answers "leave" and the other way round, presence as forward, "fall" as a get-up (lying, then upright) and
    "touch" as a parting (in contact, then apart), each read forward off the scene; backwards twice is forwards."""
    from codecsight.reference.train import reversed_example
    from codecsight.synth.labels import _then

    track, windows = _generated_windows(120.0)
    st = track.states
    swapped = {"Does an object enter?": "Does an object leave?", "Does an object leave?": "Does an object enter?"}
    by_order = {"fall": lambda w: _then(st.fallen[:, w], st.upright[:, w]),
                "touch": lambda w: _then(st.touching[:, w], 1 - st.touching[:, w])}
    changed = {"enter": 0, "fall": 0, "touch": 0}
    for ex in windows:
        back = reversed_example(track, ex)
        assert back.backward and not ex.backward and (back.first, back.length) == (ex.first, ex.length)
        forward = dict(zip(ex.questions, ex.answers))
        w = slice(ex.first, ex.first + 16)
        for q, a, t in zip(back.questions, back.answers, back.types):
            if q in swapped:
                assert swapped[q] not in forward or a == forward[swapped[q]], (ex.first, q)
                changed["enter"] += swapped[q] in forward and a != forward[q]
            elif t in by_order:
                assert a == by_order[t](w), (ex.first, q)
                changed[t] += q in forward and a != forward[q]
            elif t != "stop":
                assert a == forward[q], (ex.first, q)
        again = reversed_example(track, back)
        assert not again.backward and dict(zip(again.questions, again.answers)) == forward
    assert all(n > 0 for n in changed.values()), changed  # the scene has falls, meetings and arrivals


def test_a_backward_window_is_the_forward_one_over_reversed_frames(ref):
    """window_forward of a window shown backwards equals the forward pass over the same frames in reverse order
    (its tokens keep their places and times); it cannot be pruned, the codec's plan runs forwards."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, *INPUT_HW, 3), dtype=np.uint8)
    keep = np.ones((4, 6, 8), bool)
    q = QUESTIONS[0].text
    args = (ref.chat_system(SYSTEM_PROMPT), {q: ref.chat_question(q)})
    with torch.no_grad():
        back = window_forward(ref, Stream(frames, keep, keep), Example("s", 0, [q], [0], ["colour"], 8, True),
                              "none", *args)
        flipped = window_forward(ref, Stream(frames[::-1].copy(), keep, keep), Example("s", 0, [q], [0], ["colour"], 8),
                                 "none", *args)
        ahead = window_forward(ref, Stream(frames, keep, keep), Example("s", 0, [q], [0], ["colour"], 8), "none", *args)
        with pytest.raises(ValueError, match="backwards"):
            window_forward(ref, Stream(frames, keep, keep), Example("s", 0, [q], [0], ["colour"], 8, True), "cached",
                           *args)
    assert torch.equal(back.yes_no, flipped.yes_no) and torch.equal(back.vision, flipped.vision)
    assert not torch.allclose(back.yes_no, ahead.yes_no)


def test_weight_average_is_the_mean_and_refuses_other_architectures(tmp_path, capsys):
    from safetensors.torch import load_file

    from codecsight.reference.average import main as average

    a, b, deeper = build(seed=1), build(seed=2), build(seed=1, text_layers=2)
    for name, m in (("a", a), ("b", b), ("deeper", deeper)):
        save(m, str(tmp_path / name))
    assert average([str(tmp_path / "same"), str(tmp_path / "a"), str(tmp_path / "a")]) == 0
    assert average([str(tmp_path / "ab"), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    same, ab = load_file(tmp_path / "same" / "model.safetensors"), load_file(tmp_path / "ab" / "model.safetensors")
    assert all(torch.equal(same[n], wa[n]) for n in wa)  # the mean of one model twice is that model
    assert all(ab[n].dtype == torch.float16 and torch.equal(ab[n], ((wa[n].float() + wb[n].float()) / 2).half())
               for n in wa)
    assert any(not torch.equal(ab[n], wa[n]) for n in wa)
    la, lb = (dict(load_adapter(str(tmp_path / n)).model.named_parameters()) for n in ("a", "b"))
    loaded = load_adapter(str(tmp_path / "ab"))  # loads like any model, tokenizer included
    assert loaded.encode("Does an object fall?") == a.encode("Does an object fall?")
    for n, p in loaded.model.named_parameters():
        assert torch.equal(p, ((la[n] + lb[n]) / 2).half().float()), n
    for argv, msg in (([str(tmp_path / "x"), str(tmp_path / "a"), str(tmp_path / "deeper")], "config differs"),
                      ([str(tmp_path / "x"), str(tmp_path / "a")], "at least two"),
                      ([str(tmp_path / "x"), str(tmp_path / "a"), str(tmp_path / "nothing")], "not a saved model"),
                      ([str(tmp_path / "a"), str(tmp_path / "a"), str(tmp_path / "b")], "must not be one of")):
        with pytest.raises(SystemExit) as e:
            average(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_edge_windows_are_those_decided_at_the_edges_and_the_near_misses():
    """--edges: on a generated stream, a window whose only contact begins in its last temporal patch, or one sample
    before it begins (in contact from its first sample), is drawn; one where nothing touches or parts within 3
    samples of it and no pair comes within 60 px is not; a near miss is drawn for its gap alone."""
    from codecsight.reference.train import Stream, by_answer, edge_windows

    track, windows = _generated_windows(240.0)
    st = track.states
    streams = {"d/v.mp4": Stream(None, None, None, track=track)}
    drawn = {ex.first for ex in edge_windows(windows, streams, ("touch",))}
    no_gap = {ex.first for ex in edge_windows(windows, streams, ("touch",), near=0.0)}
    seen = {"edge": 0, "quiet": 0, "near": 0}
    for ex in windows:
        lo, hi = max(0, ex.first - 3), ex.first + 19
        around = st.touching[:, lo:hi]
        changing = [p for p in range(len(around)) if np.ptp(around[p]) > 0]  # pairs that touch or part near it
        changes = len(changing)
        onsets = [j for p in changing for j in range(1, around.shape[1]) if around[p, j - 1] < around[p, j] == 1]
        if changes == 1 and len(onsets) == 1 and np.isin(around, (0, 1)).all():
            # one contact beginning near the window (it may part again): decided at the edges when it begins in
            # the last temporal patch or at the first sample
            onset = lo + onsets[0] - ex.first
            if onset in (0, 14, 15):
                seen["edge"] += 1
                assert ex.first in drawn and ex.first in no_gap, (ex.first, onset)
        elif changes == 0 and st.gap[:, ex.first:ex.first + 16].min(initial=1e9) >= 60:
            seen["quiet"] += 1
            assert ex.first not in drawn, ex.first
        elif changes == 0 and around.max(initial=0) == 0 and st.gap[:, ex.first:ex.first + 16].min() < 60:
            seen["near"] += 1
            assert ex.first in drawn and ex.first not in no_gap, ex.first
    assert all(n > 0 for n in seen.values()), seen
    # --edge-balance: one group per (type, answer), in that order; here the edge windows answer touch No more
    # often than Yes, and the groups hand each answer half of a type's draws
    edges = edge_windows(windows, streams, ("touch", "fall"))
    groups = by_answer(edges, ("touch", "fall"))
    share = {(t, a): sum((t, a) in zip(ex.types, ex.answers) for ex in edges)
             for t in ("touch", "fall") for a in (1, 0)}
    assert [len(g) for g in groups] == list(share.values()) and share["touch", 0] > share["touch", 1] > 0
    assert all((t, a) in zip(ex.types, ex.answers) for g, (t, a) in zip(groups, share) for ex in g)
