"""The bundled reference VLM: a small Qwen2.5-VL (the real transformers class, the real special-token ids) with a
word-level tokenizer, trained on the synthetic labelled streams. It is an accuracy instrument, not a product
model: it lets every method be scored against labels on a machine that cannot download real weights.

Geometry is the real model's (14 px patches, 2x2 merge -> 28 px tokens, 2-frame temporal patches). Size:
the vocabulary must reach the real special ids (151667), so the tied embedding table dominates; hidden 48 in
float16 keeps the weights file near 15 MB.
"""
from __future__ import annotations

import math

import tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers

INPUT_HW = (168, 224)  # 6 x 8 tokens of 28 px; the synthetic streams are 320x240
RUNTIME = {"input_size": list(INPUT_HW), "fps": 2.0, "window": 16, "stride": 4}
SPECIAL = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
           "<|vision_end|>": 151653, "<|image_pad|>": 151655, "<|video_pad|>": 151656}

CONFIG = dict(
    vision_config=dict(depth=4, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=48,
                       fullatt_block_indexes=[1, 3], window_size=112, tokens_per_second=2),
    text_config=dict(hidden_size=48, intermediate_size=144, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=151668, tie_word_embeddings=True, rms_norm_eps=1e-5,
                     max_position_embeddings=4096,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 2]}),
    tie_word_embeddings=True,
    image_token_id=SPECIAL["<|image_pad|>"], video_token_id=SPECIAL["<|video_pad|>"],
    vision_start_token_id=SPECIAL["<|vision_start|>"], vision_end_token_id=SPECIAL["<|vision_end|>"],
)


def vocabulary() -> list[str]:
    """Every word the standing questions, the system prompt and the chat template use."""
    from codecsight.runtime.pipeline import SYSTEM_PROMPT
    from codecsight.synth.labels import QUESTIONS

    text = " ".join([q.text for q in QUESTIONS] + [SYSTEM_PROMPT, "Yes No system user assistant"])
    words = pre_tokenizer().pre_tokenize_str(text)
    return list(dict.fromkeys(w for w, _ in words if w not in SPECIAL))


def pre_tokenizer():
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(r"<\|[a-z_]+\|>|\n"), "isolated"), pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(tokenizers.Regex(r"[?.,!]"), "isolated")])


def word_tokenizer(words: list[str] | None = None):
    """A word-level tokenizer: plain words get small ids, the special tokens their real Qwen ids."""
    from transformers import PreTrainedTokenizerFast

    words = vocabulary() if words is None else words
    vocab = {w: i for i, w in enumerate(["<unk>", "\n", *words])}
    vocab.update(SPECIAL)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")


def spatial_rope(row: float, column: float) -> dict:
    """rope_parameters that turn the first frequency pair of the height and of the width section into `row` and
    `column` radians per token, keeping the other four of CONFIG's six.

    Why: with 12-dim heads and mrope sections [2, 2, 2], width gets the two lowest frequencies and height the two
    below time's; at base 1e4 a token in the last of 8 columns is rotated 0.017 rad from one in the first, so
    attention cannot tell left from right, nor find the same place in an earlier frame. Raising the base for all six
    (session 18, arm G) leaves no slow pair to match content over the 20-40 positions between a question and the
    frames, and the trained model forgot colour. LongRoPE's per-pair factors (transformers "longrope", factor 1,
    so no attention scaling) set just these two pairs; the slow pair of each section stays a content channel."""
    rope = CONFIG["text_config"]["rope_parameters"]
    theta, pairs = rope["rope_theta"], sum(rope["mrope_section"])
    h, w = rope["mrope_section"][0], sum(rope["mrope_section"][:2])  # first pair of the height and width sections
    factors = [1.0] * pairs
    for i, radians in ((h, row), (w, column)):
        if not 0 < radians <= math.pi:
            raise ValueError(f"spatial rotary must be within (0, pi] radians per token, got {radians}")
        factors[i] = 1.0 / (radians * theta ** (i / pairs))  # LongRoPE: inv_freq = 1 / (factor * theta ** (i / pairs))
    return {**rope, "rope_type": "longrope", "short_factor": factors, "long_factor": factors, "factor": 1.0,
            "original_max_position_embeddings": CONFIG["text_config"]["max_position_embeddings"]}


def spread(trained: int, layers: int) -> list[int]:
    """Where trained layer i sits in a stack of `layers` grown from `trained` (grow): evenly spread, first at 0."""
    if not 1 <= trained <= layers:
        raise ValueError(f"cannot grow {trained} trained layers into {layers}")
    return [i * layers // trained for i in range(trained)]


def build(seed: int = 0, text_layers: int | None = None, rope: dict | None = None, vision_layers: int | None = None,
          text_mlp: int | None = None, vision_mlp: int | None = None, text_hidden: int | None = None,
          vision_hidden: int | None = None):
    """A freshly initialised reference model wrapped in its adapter (text_layers, vision_layers: LLM and ViT depth;
    text_mlp, vision_mlp: their MLPs' intermediate width; text_hidden, vision_hidden: the LLM's and the ViT's hidden
    width, in whole heads of CONFIG's size; rope: the LLM's rope_parameters; default CONFIG's). A deeper ViT keeps
    CONFIG's full-attention blocks where grow puts them and makes the added blocks full attention too: the windowed
    blocks see 112 px only, and what more depth should add is relations across the frame (two objects meeting at a
    window's border). The MLPs' width costs no stored bytes
    to speak of; the hidden width does (the tied 151k-word embedding is most of the 20 MB: 48 -> 60 takes it from
    14.6 to 18.2 MB). A wider LLM keeps the 12-dim heads (the rotary's sections stay) and has one key/value head
    per head, so that grow can give each trained query head its trained keys and values."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from codecsight.models.qwen2_5_vl import Qwen25VLAdapter

    for name, n, most in (("text_layers", text_layers, 64), ("vision_layers", vision_layers, 64),
                          ("text_mlp", text_mlp, 4096), ("vision_mlp", vision_mlp, 4096),
                          ("text_hidden", text_hidden, 1024), ("vision_hidden", vision_hidden, 1024)):
        if n is not None and not 1 <= n <= most:
            raise ValueError(f"{name} must be within 1..{most}, got {n}")
    base, vbase = CONFIG["text_config"], CONFIG["vision_config"]
    text = dict(base, num_hidden_layers=text_layers or base["num_hidden_layers"],
                intermediate_size=text_mlp or base["intermediate_size"],
                rope_parameters=dict(rope or base["rope_parameters"]))
    if text_hidden and text_hidden != base["hidden_size"]:
        heads = _whole_heads("text_hidden", text_hidden, base["hidden_size"] // base["num_attention_heads"])
        # the norms' epsilon scales with the width as the mean square of a grown state does (_widen_residual)
        text.update(hidden_size=text_hidden, num_attention_heads=heads, num_key_value_heads=heads,
                    rms_norm_eps=base["rms_norm_eps"] * base["hidden_size"] / text_hidden)
    vision = dict(vbase, intermediate_size=vision_mlp or vbase["intermediate_size"],
                  out_hidden_size=text["hidden_size"])
    if vision_hidden and vision_hidden != vbase["hidden_size"]:  # the ViT's rotary is sized by the head, which stays
        vision.update(hidden_size=vision_hidden, num_heads=_whole_heads(
            "vision_hidden", vision_hidden, vbase["hidden_size"] // vbase["num_heads"]))
    if vision_layers:  # at CONFIG's depth, spread keeps every block in place and the layout is CONFIG's
        kept = spread(vbase["depth"], vision_layers)
        vision.update(depth=vision_layers, fullatt_block_indexes=sorted(
            {kept[i] for i in vbase["fullatt_block_indexes"]} | set(range(vision_layers)) - set(kept)))
    config = Qwen2_5_VLConfig(**{**CONFIG, "text_config": text, "vision_config": vision})
    config.codecsight = dict(RUNTIME)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = SPECIAL["<|im_end|>"]
    return Qwen25VLAdapter(model, word_tokenizer())


def _whole_heads(name: str, width: int, head: int) -> int:
    """How many heads of `head` dims make a hidden state `width` wide (a grown model keeps its heads' size)."""
    if width % head:
        raise ValueError(f"{name} must be a whole number of {head}-dim heads, got {width}")
    return width // head


def grow(adapter, trained) -> None:
    """Load a trained model into one as deep and as wide or more: trained layer i of the LLM and of the ViT goes to
    spread(...)[i]; the layers in between start as identities (zero output and down projections, biases too, so they
    add nothing to the residual stream), and an MLP's added units keep their random input weights with zero output
    weights (they add nothing either, and get gradients from the start). A wider LLM hidden state: _widen_residual;
    a wider ViT: _widen_vision. So the grown model computes what the trained one did until it learns."""
    import torch

    new_v, old_v = adapter.model.model.visual, trained.model.model.visual
    stacks = [(adapter.language_model().layers, trained.language_model().layers, "self_attn.o_proj"),
              (new_v.blocks, old_v.blocks, "attn.proj")]
    places = [spread(len(old), len(new)) for new, old, _ in stacks]
    for i, j in enumerate(places[1]):  # a windowed block must stay windowed, a full one full
        if (i in old_v.fullatt_block_indexes) != (j in new_v.fullatt_block_indexes):
            raise ValueError(f"trained ViT block {i} and block {j} of the grown ViT attend differently")
    mine = dict(adapter.model.named_parameters())
    w, width = old_v.config.hidden_size, new_v.config.hidden_size
    with torch.no_grad():
        for name, p in trained.model.named_parameters():
            if ".layers." not in name and ".blocks." not in name:
                if name not in mine:
                    raise ValueError(f"the trained model does not fit this one: it has {name}, this one not")
                if name.endswith("merger.mlp.0.weight"):  # reads four merged patches side by side
                    _copy_into(mine[name], p.unflatten(1, (-1, w)), name, mine[name].unflatten(1, (-1, width)))
                else:
                    _copy_into(mine[name], p, name)
        for (new, old, out), kept in zip(stacks, places):
            for j, layer in enumerate(new):
                if j in kept:
                    src = old[kept.index(j)]
                    for name, p in src.named_parameters():
                        if name.startswith("attn.qkv."):  # queries, keys and values each fill their own third
                            _copy_into(layer.get_parameter(name), p.unflatten(0, (3, -1)), name,
                                       layer.get_parameter(name).unflatten(0, (3, -1)))
                        else:
                            _copy_into(layer.get_parameter(name), p, name)
                    layer.mlp.down_proj.weight[:, src.mlp.down_proj.weight.shape[1]:] = 0
                    if hasattr(src, "self_attn"):
                        _give_heads_their_keys(layer.self_attn, src.self_attn)
                else:  # the ViT's projections have biases, the LLM's not
                    for name in (out, "mlp.down_proj"):
                        for p in layer.get_submodule(name).parameters():
                            p.zero_()
        _widen_residual(adapter, trained.model.config.text_config.hidden_size)
        _widen_vision(new_v, w)


def _copy_into(new, old, name: str, into=None) -> None:
    """A trained weight into the leading slice of one as large or larger (the rest keeps its initialisation).
    into: a view of `new` shaped like `old` (a weight made of parts, each to fill its own leading slice)."""
    into = new if into is None else into
    if into.dim() != old.dim() or any(a < b for a, b in zip(into.shape, old.shape)):
        raise ValueError(f"the trained model does not fit this one: {name} {tuple(old.shape)} -> {tuple(new.shape)}")
    into[tuple(slice(0, n) for n in old.shape)] = old


def _give_heads_their_keys(attn, trained) -> None:
    """With more key/value heads than the trained attention (a wider LLM has one per head), each trained query head
    gets the key/value head it shared before."""
    if attn.num_key_value_heads == trained.num_key_value_heads:
        return
    if attn.num_key_value_groups != 1:
        raise ValueError("a wider LLM needs one key/value head per head")
    d = trained.head_dim
    rows = [h // trained.num_key_value_groups * d + k for h in range(trained.num_heads) for k in range(d)]
    for proj in ("k_proj", "v_proj"):
        new, old = getattr(attn, proj), getattr(trained, proj)
        new.weight[:len(rows), :old.weight.shape[1]] = old.weight[rows]
        new.bias[:len(rows)] = old.bias[rows]


def _widen_residual(adapter, trained_width: int) -> None:
    """The LLM's added hidden dimensions start at zero in every token: zero in the embedding and in every projection
    that writes to the residual stream (attention output, MLP down, the ViT merger's output), and an added head's
    output is zero. The layers reading the stream keep random weights for them, so the added dimensions get
    gradients at once. The RMS norms now average over zeros too, so their trained weights shrink by the factor the
    root mean square does (build scales their epsilon alike): the same outputs."""
    lm, width = adapter.language_model(), adapter.model.config.text_config.hidden_size
    if width == trained_width:
        return
    lm.embed_tokens.weight[:, trained_width:] = 0
    out = adapter.model.model.visual.merger.mlp[-1]
    out.weight[trained_width:] = 0
    out.bias[trained_width:] = 0
    for layer in lm.layers:
        for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
            proj.weight[trained_width:] = 0
        layer.self_attn.o_proj.weight[:, trained_width:] = 0  # the added heads
    norms = (n for layer in lm.layers for n in (layer.input_layernorm, layer.post_attention_layernorm))
    _rescale_norms((lm.norm, *norms), trained_width, width)


def _rescale_norms(norms, trained_width: int, width: int) -> None:
    """RMS norms over a state grown from trained_width to width with zeros: the root mean square shrinks by
    sqrt(trained_width / width), so the trained weights do too and the outputs stay the trained ones."""
    for norm in norms:
        norm.weight[:trained_width] *= math.sqrt(trained_width / width)
        norm.weight[trained_width:] = norm.weight[:trained_width].mean()


def _widen_vision(visual, trained_width: int) -> None:
    """The ViT's added hidden dimensions start at zero in every patch, as _widen_residual does for the LLM: zero in
    the patch embedding and in every projection that writes to the residual stream (attention output, MLP down), an
    added head's output zero, and the merger's added units (one per added dimension of each merged patch) write
    nothing. The norms are rescaled (the ViT's epsilon, 1e-6, is fixed: a shift far under float16's)."""
    width = visual.config.hidden_size
    if width == trained_width:
        return
    visual.patch_embed.proj.weight[trained_width:] = 0
    for block in visual.blocks:
        for proj in (block.attn.proj, block.mlp.down_proj):
            proj.weight[trained_width:] = 0
            proj.bias[trained_width:] = 0
        block.attn.proj.weight[:, trained_width:] = 0  # the added heads
    visual.merger.mlp[-1].weight[:, visual.spatial_merge_unit * trained_width:] = 0
    _rescale_norms((visual.merger.ln_q, *(n for block in visual.blocks for n in (block.norm1, block.norm2))),
                   trained_width, width)
