"""Random-weight Qwen2.5-VL models the benchmarks time where the bundled model is too small for model compute to
dominate: "medium", real proportions at a size a CPU can run, and "large", the published 7B model's shapes, for a
GPU (about 8 B parameters: 17 GB in bf16)."""
from __future__ import annotations

VISION = dict(depth=8, hidden_size=640, num_heads=10, intermediate_size=1710, out_hidden_size=1024,
              fullatt_block_indexes=[7], window_size=112, tokens_per_second=2)
TEXT = dict(hidden_size=1024, intermediate_size=5504, num_hidden_layers=8, num_attention_heads=8,
            num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
DESCRIPTION = ("Qwen2.5-VL proportions, random weights: ViT depth 8 (full attention at layer 7, else 112 px windows), "
               "hidden 640, 10 heads, MLP 1710; LLM 8 layers, hidden 1024, 8 heads x 128, 2 KV heads, MLP 5504")
# Qwen2.5-VL-7B-Instruct's config.json
LARGE_VISION = dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=3584,
                    fullatt_block_indexes=[7, 15, 23, 31], window_size=112, tokens_per_second=2)
LARGE_TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                  num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
LARGE_DESCRIPTION = ("Qwen2.5-VL-7B shapes, random weights: ViT depth 32 (full attention at 7/15/23/31, else 112 px "
                     "windows), hidden 1280, 16 heads, MLP 3420; LLM 28 layers, hidden 3584, 28 heads x 128, 4 KV "
                     "heads, MLP 18944")
SIZES = {"medium": (VISION, TEXT, DESCRIPTION), "large": (LARGE_VISION, LARGE_TEXT, LARGE_DESCRIPTION)}


def medium_adapter(seed: int = 0, vision: dict | None = None, text: dict | None = None, size: str = "medium",
                   device: str = "cpu", dtype=None):
    """A random-weight model of `size` (or with these vision / text configs) with the reference model's word
    tokenizer (questions need one), made on `device` in `dtype` (default: bf16 on a GPU, float32 on the CPU,
    whose kernels want it)."""
    import torch

    from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
    from codecsight.reference.model import word_tokenizer

    v, t, _ = SIZES[size]
    dtype = dtype or (torch.float32 if device == "cpu" else torch.bfloat16)
    adapter = Qwen25VLAdapter.tiny(seed, device=device, dtype=dtype, vision_config=vision or v, text_config=text or t)
    adapter.tokenizer = word_tokenizer()
    return adapter
