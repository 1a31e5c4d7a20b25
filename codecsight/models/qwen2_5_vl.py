"""Adapter for the qwen2_5_vl family."""
from __future__ import annotations

from codecsight.geometry import QWEN2_5_VL
from codecsight.models.base import ModelAdapter, patch_embed, register
from codecsight.vision.preprocess import CLIP_MEAN, CLIP_STD


@register
class Qwen25VLAdapter(ModelAdapter):
    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    geometry = QWEN2_5_VL

    # ---- vision side --------------------------------------------------------------------------------------

    config_class = "Qwen2_5_VLConfig"
    model_class = "Qwen2_5_VLForConditionalGeneration"
    mean, std = CLIP_MEAN, CLIP_STD
    # Tiny but complete: windowed and full-attention ViT layers (112 px windows = 4x4 tokens), M-RoPE text.
    tiny_config = dict(
        vision_config=dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           fullatt_block_indexes=[1, 3], window_size=112),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=151936,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}),
    )

    @classmethod
    def tower_spec(cls, config):
        from codecsight.flops import TowerSpec, side

        v = config.vision_config
        wide = v.hidden_size * v.spatial_merge_size**2
        full_layers = len(set(v.fullatt_block_indexes) & set(range(v.depth)))
        return TowerSpec(v.depth, v.hidden_size, v.intermediate_size, 3,
                         v.in_channels * side(v.temporal_patch_size) * side(v.patch_size) ** 2, v.spatial_merge_size,
                         ((wide, wide), (wide, v.out_hidden_size)),
                         window=v.window_size // v.spatial_merge_size // side(v.patch_size),
                         window_layers=v.depth - full_layers)

    @property
    def visual(self):
        return self.model.model.visual

    @property
    def vit_n_layers(self) -> int:
        return len(self.visual.blocks)

    @property
    def vit_scale(self) -> float:
        return self.visual.blocks[0].attn.scaling

    @property
    def vit_out_dim(self) -> int:
        return self.config.vision_config.out_hidden_size

    def vision_reference(self, frames):
        import torch

        pixels, grid = self.pixel_values(frames)
        with torch.no_grad():
            out = self.visual(pixels.to(self.visual.device, self.visual.dtype),
                              grid_thw=torch.tensor([grid], device=self.visual.device))
        return out.pooler_output, list(getattr(out, "deepstack_features", None) or [])

    @property
    def _window_side(self) -> int:
        v = self.visual
        return v.window_size // v.spatial_merge_size // v.patch_size

    def vit_window(self, layer: int) -> int | None:
        return None if layer in self.visual.fullatt_block_indexes else self._window_side

    def _vit_rope(self, h, batch):
        import torch

        return self.visual.rotary_pos_emb(h, torch.stack(batch.patch_coords(), dim=-1).to(h.device))

    def vit_embed(self, batch):
        h = patch_embed(self.visual.patch_embed, batch.patches)
        return h, self._vit_rope(h, batch)

    def vit_qkv(self, layer, h, rope):
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

        block = self.visual.blocks[layer]
        q, k, v = block.attn.qkv(block.norm1(h)).reshape(len(h), 3, block.attn.num_heads, -1).unbind(1)
        q, k = apply_rotary_pos_emb_vision(q, k, *rope)
        return q, k, v

    def vit_finish(self, layer, h, attn):
        block = self.visual.blocks[layer]
        h = h + block.attn.proj(attn.reshape(len(h), -1))
        return h + block.mlp(block.norm2(h))

    def vit_merge(self, h, tap=None):
        return self.visual.merger(h)

    # ---- language side ------------------------------------------------------------------------------------
    # The whole window is one video: <|vision_start|> [temporal patches] <|vision_end|>, as Qwen's processor lays
    # out a video. Where the question starts after it: see codecsight.prefill.positions ("vllm" = Qwen's rule).
    after_vision = "vllm"

    def position_rule(self, window):
        from codecsight.prefill.positions import PositionRule

        segs = window.segments
        # seconds per temporal patch from the segments' stream times (transformers' second_per_grid_ts)
        step = (segs[-1].seconds - segs[0].seconds) / (len(segs) - 1) if len(segs) > 1 else 1.0
        return PositionRule(mrope=True, time_interval=self.config.vision_config.tokens_per_second * step,
                            after_vision=self.after_vision)

    def window_pieces(self, window, system_ids):
        from codecsight.prefill.window import Text, Vision

        cfg = self.config
        return [Text((*system_ids, cfg.vision_start_token_id), ("system",)),
                Vision(tuple(window.segments)),
                Text((cfg.vision_end_token_id,), ("vision_end",))]
