"""A tiny Qwen2.5-VL with a word-level tokenizer, for runtime tests (random weights, real classes)."""
from __future__ import annotations

import tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL = {"<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652, "<|vision_end|>": 151653,
           "<|image_pad|>": 151655, "<|video_pad|>": 151656}
WORDS = ("Yes No is there a an red blue object person moving ? . , system user assistant You watch camera stream "
         "and answer questions about the frames").split()


def word_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["<unk>", "\n", *WORDS])}
    vocab.update(SPECIAL)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(r"<\|[a-z_]+\|>|\n"), "isolated"), pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(tokenizers.Regex(r"[?.,]"), "isolated")])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>")


def tiny_vlm(seed: int = 0):
    from codecsight.models.qwen2_5_vl import Qwen25VLAdapter

    adapter = Qwen25VLAdapter.tiny(seed)
    adapter.tokenizer = word_tokenizer()
    return adapter
