"""The "medium" random-weight Qwen2.5-VL the benchmarks time: real proportions at a size a CPU can run, so that
model compute, not Python or decoding, dominates, as it does for real models on a GPU."""
from __future__ import annotations

VISION = dict(depth=8, hidden_size=640, num_heads=10, intermediate_size=1710, out_hidden_size=1024,
              fullatt_block_indexes=[7], window_size=112, tokens_per_second=2)
TEXT = dict(hidden_size=1024, intermediate_size=5504, num_hidden_layers=8, num_attention_heads=8,
            num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
DESCRIPTION = ("Qwen2.5-VL proportions, random weights: ViT depth 8 (full attention at layer 7, else 112 px windows), "
               "hidden 640, 10 heads, MLP 1710; LLM 8 layers, hidden 1024, 8 heads x 128, 2 KV heads, MLP 5504")


def medium_adapter(seed: int = 0, vision: dict | None = None, text: dict | None = None):
    """The medium model with the reference model's word tokenizer (questions need one)."""
    from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
    from codecsight.reference.model import word_tokenizer

    adapter = Qwen25VLAdapter.tiny(seed, vision_config=vision or VISION, text_config=text or TEXT)
    adapter.tokenizer = word_tokenizer()
    return adapter
