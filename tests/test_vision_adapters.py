"""Adapters load real checkpoints: a tiny model saved with save_pretrained comes back through the loader."""
import numpy as np
import pytest
import torch

from codecsight.models import load_adapter
from codecsight.models.internvl3 import InternVL3Adapter
from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
from codecsight.models.qwen3_vl import Qwen3VLAdapter

SIZES = {"qwen2_5_vl": (56, 84), "qwen3_vl": (64, 96), "internvl3": (112, 112)}


@pytest.mark.parametrize("cls", [Qwen25VLAdapter, Qwen3VLAdapter, InternVL3Adapter], ids=lambda c: c.family)
def test_from_pretrained_round_trip(cls, tmp_path):
    tiny = cls.tiny(seed=1, vision_config={"depth": 2} if cls.family != "internvl3" else {"num_hidden_layers": 2})
    assert type(tiny.model).__name__ == cls.model_class
    assert tiny.config.vision_config.to_dict().get("depth", 2) == 2  # overrides reach the config
    tiny.model.save_pretrained(tmp_path)
    loaded = load_adapter(str(tmp_path), dtype=torch.float32)
    assert type(loaded) is cls and loaded.tokenizer is None
    frames = np.random.default_rng(0).integers(0, 256, (2, *SIZES[cls.family], 3), dtype=np.uint8)
    with torch.no_grad():
        ref, loaded_out = tiny.vision_reference(frames)[0], loaded.vision_reference(frames)[0]
    assert torch.equal(ref, loaded_out)


def test_tiny_uses_real_special_token_ids():
    q = Qwen25VLAdapter.tiny(seed=0).config
    assert (q.vision_start_token_id, q.vision_end_token_id, q.image_token_id, q.video_token_id) == \
        (151652, 151653, 151655, 151656)
    assert InternVL3Adapter.tiny(seed=0).config.image_token_id == 151667
