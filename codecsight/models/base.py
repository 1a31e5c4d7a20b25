"""The adapter interface every model family implements, and the loader that picks the family from a config.

Two halves, kept in separate sections of each family file:
- vision side: own frame preprocessing, the (pruned) vision tower, the merger/projector;
- language side: the decoder stack, rotary kind and position rule, text embedding, answer head.
"""
from __future__ import annotations

import json
import os
from typing import ClassVar

from codecsight.errors import ConfigError
from codecsight.geometry import TokenGeometry

_FAMILIES: dict[str, type["ModelAdapter"]] = {}


def family_of(config) -> type["ModelAdapter"]:
    """The adapter class of a model config (by its model_type)."""
    import codecsight.models.families  # noqa: F401  (registers the families)

    if config.model_type not in _FAMILIES:
        raise ConfigError(f"model type {config.model_type!r} is not supported "
                          f"(supported: {', '.join(sorted(_FAMILIES))})")
    return _FAMILIES[config.model_type]


def register(cls: type["ModelAdapter"]) -> type["ModelAdapter"]:
    for model_type in cls.model_types:
        _FAMILIES[model_type] = cls
    return cls


def patch_embed(embed, patches):
    """A Qwen-VL patch embedding (a Conv3d whose stride is its kernel) as the matrix product it is: the same
    result from one GEMM on the flattened patches, ~3x faster on CPU than the 5-D convolution."""
    import torch.nn.functional as F

    proj = embed.proj
    return F.linear(patches.to(proj.weight.dtype), proj.weight.flatten(1), proj.bias)


class ModelAdapter:
    """Wraps one transformers VLM. Subclasses set `family`, `model_types` and `geometry`."""

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    geometry: ClassVar[TokenGeometry]

    def __init__(self, model, tokenizer=None):
        self.model = model.eval()
        self.tokenizer = tokenizer

    @property
    def config(self):
        return self.model.config

    def default_input_hw(self) -> tuple[int, int]:
        """The model input size frames are resized to: a model saved by CodecSight says it in its config
        (`codecsight.input_size`, e.g. the bundled reference model), else 448 px square."""
        size = (getattr(self.config, "codecsight", None) or {}).get("input_size", 448)
        h, w = (size, size) if isinstance(size, int) else size
        return self.geometry.snap(h, w)

    # transformers class names of the family (imported lazily: the CLI must not pay for transformers), and the
    # tiny config of `tiny()`: nested dicts as the config class takes them.
    config_class: ClassVar[str]
    model_class: ClassVar[str]
    tiny_config: ClassVar[dict]

    @classmethod
    def from_pretrained(cls, id_or_path: str, dtype=None, device: str = "cpu") -> "ModelAdapter":
        """Load weights by hub id or local folder (dtype: a torch dtype, or None for the checkpoint's own) onto
        `device` (see `resolve_device`)."""
        import torch
        import transformers

        device = resolve_device(device)
        configure_attention(device)
        # use_kernels=False: transformers would otherwise swap layers for hub kernels it downloads at load time
        # (where `kernels` is installed): offline machines cannot, and GPU numerics would leave the CPU's
        model = getattr(transformers, cls.model_class).from_pretrained(id_or_path, dtype=dtype or "auto",
                                                                       use_kernels=False)
        if dtype is None and device == "cpu" and model.dtype in (torch.float16, torch.bfloat16):
            model = model.float()  # weights stored in half precision; CPU kernels want float32
        model = model.to(device)
        # A weights-only folder (as tests save) has no tokenizer, and AutoTokenizer would make up an empty one.
        tokenizer = None
        if not os.path.isdir(id_or_path) or any(
                os.path.isfile(os.path.join(id_or_path, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
            tokenizer = transformers.AutoTokenizer.from_pretrained(id_or_path)
        return cls(model, tokenizer)

    @classmethod
    def tower_spec(cls, config):
        """The vision tower's widths (`codecsight.flops.TowerSpec`) for FLOP counting."""
        raise NotImplementedError

    @classmethod
    def tiny(cls, seed: int = 0, device: str = "cpu", dtype=None, **overrides) -> "ModelAdapter":
        """A randomly initialised model of the real class from a tiny config, for tests. Overrides merge into
        the tiny config one level deep, e.g. tiny(vision_config={"depth": 8}, text_config={...}). The weights are
        made on `device` (a model of real size is initialised there in seconds, on a CPU in minutes), in float32
        or `dtype`."""
        import torch
        import transformers

        cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in cls.tiny_config.items()}
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
        config = getattr(transformers, cls.config_class)(**cfg)
        torch.manual_seed(seed)
        device = resolve_device(device)
        configure_attention(device)
        with torch.device(device):
            model = getattr(transformers, cls.model_class)(config)
        return cls(model.to(dtype or torch.float32))

    # ---- vision side (token plan, pruned ViT) -------------------------------------------------------------
    # Frames come in at the model input size (whole tokens of `geometry`); `pixel_values` turns them into patch
    # rows, 4 consecutive rows per merged token, for every family. `codecsight.vision.encoder.PrunedViT` drives
    # the `vit_*` steps; each family implements them on its own tower: vit_embed(batch) -> (h, aux),
    # vit_qkv(layer, h, aux) -> q, k, v (rows, heads, head_dim), vit_finish(layer, h, attn) -> h,
    # vit_merge(h, tap) -> (tokens, D), and the properties vit_n_layers, vit_scale, vit_out_dim.
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    vit_extras: ClassVar[int] = 0  # rows per temporal patch that every token attends to (InternVL's CLS)

    def pixel_values(self, frames, tokens=None):
        """(T, H, W, 3) uint8 -> (patch rows float32, grid_thw in patches); tokens: only these merged tokens'
        rows (raster indices)."""
        from codecsight.vision.preprocess import video_pixel_values

        return video_pixel_values(frames, self.geometry, self.mean, self.std, tokens)

    def vision_reference(self, frames):
        """The library's own full encoding of frames (T, H, W, 3): (embeds (tokens, D), deepstack list)."""
        raise NotImplementedError

    vit_taps: tuple[int, ...] = ()  # layers after which a deepstack merger taps the hidden states

    def vit_window(self, layer: int) -> int | None:
        """Window side in tokens of a windowed-attention layer; None: the layer attends over the whole patch."""
        return None

    # ---- language side (window prefill, KV reuse) ---------------------------------------------------------
    # The three families' LLMs share one shape (model.model.language_model with embed_tokens, layers of
    # input_layernorm / self_attn.v_proj, norm, rotary_emb; model.lm_head), so the generic parts live here and a
    # family adds its position rule, rotary call and the text around frames.

    def language_model(self):
        return self.model.model.language_model

    def position_rule(self, window):
        """The family's `PositionRule` (codecsight.prefill.positions) for this window."""
        raise NotImplementedError

    def window_pieces(self, window, system_ids: list[int]) -> list:
        """The window as `Text` / `Vision` pieces (codecsight.prefill.window), system prompt first."""
        raise NotImplementedError

    def rotary(self, x, positions):
        """cos, sin of shape (1, L, head_dim) for positions (3, L), from the model's own rotary embedding.
        Default: 3-D M-RoPE (the embedding mixes the three rows itself, sectioned or interleaved)."""
        return self.language_model().rotary_emb(x, positions[:, None, :])

    def rerotation_refusal(self) -> str | None:
        """Why keys cannot be moved exactly to new positions by a rotation, or None where they can: the rotation
        must cover the whole head and must not be scaled or depend on the sequence length."""
        rope = self.language_model().rotary_emb
        cfg = self.config.get_text_config()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        if rope.attention_scaling != 1.0:
            return f"rotary attention_scaling is {rope.attention_scaling:g} (rope_type {rope.rope_type!r}), not 1"
        params = cfg.rope_parameters or {}
        fixed = rope.rope_type in ("default", "linear") or (  # LongRoPE with one factor list for every length
            rope.rope_type == "longrope" and params.get("short_factor") == params.get("long_factor"))
        if not fixed:
            return f"rope_type {rope.rope_type!r} changes its frequencies with the sequence length"
        if 2 * rope.inv_freq.numel() != head_dim:
            return f"partial rotary: {2 * rope.inv_freq.numel()} of {head_dim} head dims rotate"
        return None

    def synchronize(self) -> None:
        """Wait for the model's device to finish queued work (a no-op on the CPU), so wall-clock timers around a
        stage measure that stage and not the one that happens to wait for it."""
        import torch

        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)

    def embed_text(self, ids):
        import torch

        ids = torch.as_tensor(list(ids), dtype=torch.long, device=self.model.device)
        return self.language_model().embed_tokens(ids)

    def values(self, layer: int, hidden):
        """Value projections (1, kv_heads, n, head_dim) of hidden states entering `layer` (CacheBlend's check)."""
        block = self.language_model().layers[layer]
        v = block.self_attn.v_proj(block.input_layernorm(hidden))
        return v.view(*hidden.shape[:2], -1, block.self_attn.head_dim).transpose(1, 2)

    def logits(self, hidden, rows: list[int] | None = None):
        """Vocabulary logits of the questions being answered. The head is a (vocab, hidden) table larger than all
        decoder layers together. For a handful of rows, table @ rows^T streams it once for all of them where
        rows @ table^T took 1.5x longer on CPU (4 rows: 118 -> 79 ms); from 8 rows on the plain product is as fast
        or faster. Same dot products either way. rows: only these vocabulary entries."""
        head = self.model.lm_head
        h = self.language_model().norm(hidden)
        if rows is not None:
            return h @ head.weight[rows].T + (0 if head.bias is None else head.bias[rows])
        if h.shape[:-1].numel() >= 8:
            return head(h)
        out = (head.weight @ h.reshape(-1, h.shape[-1]).T).T.reshape(*h.shape[:-1], -1)
        return out + head.bias if head.bias is not None else out

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ConfigError(f"{self.family}: encoding text needs a tokenizer (this model was loaded without one)")
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids) if self.tokenizer is not None else " ".join(map(str, ids))

    def chat_system(self, system: str) -> list[int]:
        """ChatML (Qwen2.5-VL, Qwen3-VL and InternVL3 all use it): the system turn and the opening of the user turn
        that the frames go into."""
        return self.encode(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n")

    def chat_question(self, question: str) -> list[int]:
        return self.encode(f"{question}<|im_end|>\n<|im_start|>assistant\n")

    def yes_no_ids(self) -> tuple[int, int]:
        return self.encode("Yes")[0], self.encode("No")[0]

    def stop_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id if self.model.generation_config else None
        return set(ids if isinstance(ids, list) else [] if ids is None else [ids])


def resolve_device(name: str) -> str:
    """A torch device for the model: "cpu", "cuda", "cuda:N", or "auto" (the first GPU where there is one, else
    the CPU). A device this machine lacks is a clear error, not a crash at the first tensor."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device {name!r} is not a torch device (cpu, cuda, cuda:N or auto)") from e
    if device.type == "cpu":
        return "cpu"
    if device.type != "cuda":
        raise ConfigError(f"device {name!r}: only cpu and cuda are supported")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: this machine has no CUDA GPU that torch can use "
                          f"(torch {torch.__version__}; use --device cpu)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return str(device)


def configure_attention(device: str) -> None:
    """On a GPU, leave cuDNN out of torch's attention backends (flash and memory-efficient attention remain).
    From torch 2.11 cuDNN attention is the first choice on Hopper, and it builds an execution plan for every new
    shape (reported at hundreds of ms each); pruned windows change shape on nearly every call (2 minutes of a
    labelled stream: full compute's attention calls come in 11 shapes, codecsight's in 147). On the H200 in
    session 17 codecsight ran 4.25x full compute's time with 7B shapes, and 0.70x after this setting and moving
    index tensors to the device once per stage (README, "On a GPU"; the two were not measured apart)."""
    import torch

    if device != "cpu":
        torch.backends.cuda.enable_cudnn_sdp(False)


def _model_type(id_or_path: str) -> str:
    cfg = os.path.join(id_or_path, "config.json")
    if os.path.isfile(cfg):
        with open(cfg) as f:
            return json.load(f).get("model_type", "")
    if os.path.exists(id_or_path) or id_or_path.startswith((".", "/", "~")):
        raise ConfigError(f"{id_or_path}: no model there (a model folder holds config.json)")
    from transformers import AutoConfig  # hub id: the config tells the family (cached or downloaded)

    try:
        return AutoConfig.from_pretrained(id_or_path).model_type
    except (OSError, ValueError) as e:
        raise ConfigError(f"{id_or_path}: cannot load the model's config ({e})") from e


BUNDLED_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reference_model")


def load_adapter(id_or_path: str | None = None, **kwargs) -> ModelAdapter:
    """Load a model by hub id or local folder (default: the bundled reference VLM) and wrap it in its family's
    adapter."""
    import codecsight.models.families  # noqa: F401  (registers the families)

    if id_or_path is None:
        id_or_path = BUNDLED_MODEL
        if not os.path.isfile(os.path.join(id_or_path, "config.json")):
            raise ConfigError(f"the bundled reference model is missing from {id_or_path} (train it with "
                              f"`python -m codecsight.reference.train`, or pass --model)")

    model_type = _model_type(id_or_path)
    if model_type not in _FAMILIES:
        raise ConfigError(f"{id_or_path}: model type {model_type!r} is not supported "
                          f"(supported: {', '.join(sorted(_FAMILIES))})")
    return _FAMILIES[model_type].from_pretrained(id_or_path, **kwargs)
