"""Adapter for the internvl3 family."""
from __future__ import annotations

import numpy as np

from codecsight.errors import ConfigError
from codecsight.geometry import INTERNVL3
from codecsight.models.base import ModelAdapter, register
from codecsight.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD


@register
class InternVL3Adapter(ModelAdapter):
    family = "internvl3"
    model_types = ("internvl",)
    geometry = INTERNVL3

    # ---- vision side --------------------------------------------------------------------------------------

    # InternViT: conv patch embedding plus a learned position table, a CLS row every patch attends to (dropped
    # at the end), pre-norm layers with layer scale; pixel shuffle 0.5 concatenates each token's 2x2 patches
    # (row-major, the order of our patch rows) before the projector. Its layers take no mask or positions, so
    # pruned encoding is always the own block loop.
    config_class = "InternVLConfig"
    model_class = "InternVLForConditionalGeneration"
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    vit_extras = 1  # the CLS row
    tiny_config = dict(
        vision_config=dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                           image_size=[112, 112], patch_size=[14, 14]),
        text_config=dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=151936),
        image_seq_length=16,
    )

    @classmethod
    def tower_spec(cls, config):
        from codecsight.flops import TowerSpec, side

        v = config.vision_config
        merge = round(1 / config.downsample_ratio)
        text = config.text_config.hidden_size
        return TowerSpec(v.num_hidden_layers, v.hidden_size, v.intermediate_size, 2,
                         v.num_channels * side(v.patch_size) ** 2, merge,
                         ((v.hidden_size * merge**2, text), (text, text)), cls=1)

    @property
    def tower(self):
        return self.model.model.vision_tower

    @property
    def vit_n_layers(self) -> int:
        if self.config.vision_feature_layer != -1 or self.config.vision_feature_select_strategy != "default":
            raise ConfigError("pruned InternVL encoding needs vision_feature_layer -1 and the 'default' strategy")
        return len(self.tower.encoder.layer)

    @property
    def vit_scale(self) -> float:
        return self.tower.encoder.layer[0].attention.scale

    @property
    def vit_out_dim(self) -> int:
        return self.config.text_config.hidden_size

    def default_input_hw(self) -> tuple[int, int]:
        """One square tile of the vision tower's size (frames are resized to it whole; no tiling)."""
        side = self.config.vision_config.image_size[0]
        return side, side

    def pixel_values(self, frames, tokens=None):
        side = self.config.vision_config.image_size[0]
        if np.asarray(frames).shape[1:3] != (side, side):
            raise ConfigError(f"InternVL tiles are {side}x{side} px, got frames of {np.asarray(frames).shape[1:3]}")
        return super().pixel_values(frames, tokens)

    def vision_reference(self, frames):
        import torch

        from codecsight.vision.preprocess import image_pixel_values

        self.pixel_values(frames)  # same size check
        with torch.no_grad():
            out = self.model.model.get_image_features(
                image_pixel_values(frames, self.mean, self.std).to(self.model.device, self.tower.dtype),
                vision_feature_layer=self.config.vision_feature_layer,
                vision_feature_select_strategy=self.config.vision_feature_select_strategy)
        return out.pooler_output.flatten(0, 1), []

    def vit_embed(self, batch):
        import torch

        emb = self.tower.embeddings
        p = emb.patch_embeddings.patch_size
        h = emb.patch_embeddings.projection(batch.patches.view(-1, 3, *p).to(self.tower.dtype)).flatten(1)
        cls = emb.cls_token[0].expand(len(batch.grids), -1)
        if emb.position_embeddings is not None:
            (rows, cols), = set(batch.grids)  # one tile size: pixel_values checks it
            gw = cols * batch.merge
            table = emb.interpolate_pos_encoding(h.new_empty(1, 1 + rows * batch.merge * gw, h.shape[-1]),
                                                 rows * batch.merge * p[0], gw * p[1])[0]
            ph, pw = batch.patch_coords()
            h = h + table[(1 + ph * gw + pw).to(h.device)]
            cls = cls + table[0]
        return torch.cat([h, cls]), None

    def vit_qkv(self, layer, h, aux=None):
        att = self.tower.encoder.layer[layer].attention
        x = self.tower.encoder.layer[layer].layernorm_before(h)
        shape = (len(h), att.num_heads, att.head_dim)
        return (att.q_norm(att.q_proj(x)).view(shape), att.k_norm(att.k_proj(x)).view(shape),
                att.v_proj(x).view(shape))

    def vit_finish(self, layer, h, attn):
        block = self.tower.encoder.layer[layer]
        h = block.lambda_1 * block.attention.projection_layer(attn.reshape(len(h), -1)) + h
        return block.lambda_2 * block.mlp(block.layernorm_after(h)) + h

    def vit_merge(self, h, tap=None):
        h = self.tower.layernorm(h)
        return self.model.model.multi_modal_projector(h.view(-1, h.shape[-1] * self.geometry.merge ** 2))

    # ---- language side ------------------------------------------------------------------------------------
    # 1-D RoPE. InternVL's processor writes a video as "Frame1: <img>[tokens]</img>\n" per frame; the frame
    # numbers count within the window, so those few text tokens are new in every window.
    IMG_START, IMG_END = 151665, 151666  # "<img>", "</img>" in InternVL3's tokenizer (IMG_CONTEXT is 151667)

    def position_rule(self, window):
        from codecsight.prefill.positions import PositionRule

        return PositionRule(mrope=False)

    def rotary(self, x, positions):
        return self.language_model().rotary_emb(x, positions[:1])

    def window_pieces(self, window, system_ids):
        from codecsight.prefill.window import Text, Vision

        pieces = [Text(tuple(system_ids), ("system",))]
        for i, seg in enumerate(window.segments):
            label = tuple(self.encode(f"Frame{i + 1}: ")) if self.tokenizer is not None else ()
            newline = tuple(self.encode("\n")) if self.tokenizer is not None else ()
            pieces += [Text((*label, self.IMG_START), (seg.key, "pre")), Vision((seg,)),
                       Text((self.IMG_END, *newline), (seg.key, "post"))]
        return pieces
