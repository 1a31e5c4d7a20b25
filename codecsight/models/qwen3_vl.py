"""Adapter for the qwen3_vl family."""
from __future__ import annotations

from codecsight.geometry import QWEN3_VL
from codecsight.models.base import ModelAdapter, patch_embed, register
from codecsight.models.qwen2_5_vl import Qwen25VLAdapter
from codecsight.vision.preprocess import HALF_MEAN, HALF_STD


@register
class Qwen3VLAdapter(ModelAdapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl",)
    geometry = QWEN3_VL

    # ---- vision side --------------------------------------------------------------------------------------

    # The ViT blocks, rotary and merger are Qwen2.5-VL's (without windows); added: a learned position table
    # resampled to each grid, and deepstack mergers tapping intermediate layers.
    config_class = "Qwen3VLConfig"
    model_class = "Qwen3VLForConditionalGeneration"
    mean, std = HALF_MEAN, HALF_STD
    tiny_config = dict(
        vision_config=dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           num_position_embeddings=64, deepstack_visual_indexes=[1, 2]),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, vocab_size=151936,
                         rope_parameters={"rope_type": "default", "rope_theta": 5e5, "mrope_section": [4, 2, 2],
                                          "mrope_interleaved": True}),
    )
    visual = Qwen25VLAdapter.visual
    vit_n_layers = Qwen25VLAdapter.vit_n_layers
    vit_scale = Qwen25VLAdapter.vit_scale
    vit_out_dim = Qwen25VLAdapter.vit_out_dim
    vision_reference = Qwen25VLAdapter.vision_reference
    vit_qkv = Qwen25VLAdapter.vit_qkv
    vit_finish = Qwen25VLAdapter.vit_finish
    _vit_rope = Qwen25VLAdapter._vit_rope

    @classmethod
    def tower_spec(cls, config):
        from codecsight.flops import TowerSpec, side

        v = config.vision_config
        wide = v.hidden_size * v.spatial_merge_size**2
        return TowerSpec(v.depth, v.hidden_size, v.intermediate_size, 2,
                         v.in_channels * side(v.temporal_patch_size) * side(v.patch_size) ** 2, v.spatial_merge_size,
                         ((wide, wide), (wide, v.out_hidden_size)), mergers=1 + len(v.deepstack_visual_indexes))

    @property
    def vit_taps(self) -> tuple[int, ...]:
        return tuple(self.visual.deepstack_visual_indexes)

    def _vit_interp(self, batch):
        """Position-table taps and weights of the kept patches: the full grid's, gathered."""
        import torch
        from transformers.vision_utils import get_vision_interpolation_indices_and_weights

        v, m2 = self.visual, batch.merge ** 2
        tables, index, weight = {}, [], []
        bounds = torch.searchsorted(batch.segment, torch.arange(len(batch.grids) + 1)).tolist()
        for s, (rows, cols) in enumerate(batch.grids):
            if (rows, cols) not in tables:
                tables[rows, cols] = get_vision_interpolation_indices_and_weights(
                    torch.tensor([[1, rows * batch.merge, cols * batch.merge]]), v.num_grid_per_side,
                    mode=v.interpolation_mode, align_corners=v.interpolation_align_corners,
                    spatial_merge_size=batch.merge)
            part = slice(bounds[s], bounds[s + 1])
            token = batch.row[part] * cols + batch.col[part]
            rows_in_grid = (token[:, None] * m2 + torch.arange(m2)).reshape(-1)
            index.append(tables[rows, cols][0][rows_in_grid])
            weight.append(tables[rows, cols][1][rows_in_grid])
        return torch.cat(index).to(self.model.device), torch.cat(weight).to(self.model.device)

    def vit_embed(self, batch):
        v = self.visual
        index, weight = self._vit_interp(batch)
        h = patch_embed(v.patch_embed, batch.patches)
        h = h + (v.pos_embed(index) * weight[:, :, None]).sum(1).to(h.dtype)
        return h, self._vit_rope(h, batch)

    def vit_merge(self, h, tap=None):
        return (self.visual.merger if tap is None else self.visual.deepstack_merger_list[tap])(h)

    # ---- language side ------------------------------------------------------------------------------------
    # Qwen3-VL's processor writes every temporal patch as its own block behind a timestamp:
    # "<2.5 seconds><|vision_start|>[patch]<|vision_end|>", so each block has temporal position 0 and the
    # interleaved M-RoPE carries time only through the text positions. Timestamps are relative to the window's
    # first segment (as the processor's are to the video's start); without a tokenizer (random-weight tests) the
    # timestamp text is left out.

    def position_rule(self, window):
        from codecsight.prefill.positions import PositionRule

        return PositionRule(mrope=True)

    def window_pieces(self, window, system_ids):
        from codecsight.prefill.window import Text, Vision

        cfg, t0 = self.config, window.segments[0].seconds
        pieces = [Text(tuple(system_ids), ("system",))]
        for seg in window.segments:
            stamp = tuple(self.encode(f"<{seg.seconds - t0:.1f} seconds>")) if self.tokenizer is not None else ()
            pieces += [Text((*stamp, cfg.vision_start_token_id), (seg.key, "pre")), Vision((seg,)),
                       Text((cfg.vision_end_token_id,), (seg.key, "post"))]
        return pieces
