"""A tiny Qwen2.5-VL with the reference model's word-level tokenizer, for runtime tests (random weights, real
classes)."""
from __future__ import annotations

from codecsight.reference.model import word_tokenizer

WORDS = ("Yes No is there a an red blue object person moving ? . , system user assistant You watch camera stream "
         "and answer questions about the frames").split()


def tiny_vlm(seed: int = 0):
    from codecsight.models.qwen2_5_vl import Qwen25VLAdapter

    adapter = Qwen25VLAdapter.tiny(seed)
    adapter.tokenizer = word_tokenizer(WORDS)
    return adapter
