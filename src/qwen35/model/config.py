"""Qwen3.5 configuration: the fields of the official config.json that the engine uses.

Owns parsing of `config.json` (the multimodal wrapper with `text_config` / `vision_config`, or a bare text
config). Imports no torch. Invariant: `layer_types[i]` is "linear_attention" (Gated DeltaNet) or
"full_attention" (gated softmax attention) for every layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    layer_types: tuple[str, ...]
    linear_conv_kernel_dim: int
    linear_key_head_dim: int
    linear_value_head_dim: int
    linear_num_key_heads: int
    linear_num_value_heads: int
    rms_norm_eps: float
    rope_theta: float
    partial_rotary_factor: float
    mrope_section: tuple[int, int, int]
    mrope_interleaved: bool
    max_position_embeddings: int
    tie_word_embeddings: bool
    eos_token_id: int | None
    hidden_act: str = "silu"
    attention_bias: bool = False

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def attention_layer_ids(self) -> list[int]:
        return [i for i, t in enumerate(self.layer_types) if t == "full_attention"]

    @property
    def deltanet_layer_ids(self) -> list[int]:
        return [i for i, t in enumerate(self.layer_types) if t == "linear_attention"]

    @property
    def gdn_conv_dim(self) -> int:
        key_dim = self.linear_key_head_dim * self.linear_num_key_heads
        return 2 * key_dim + self.linear_value_head_dim * self.linear_num_value_heads


@dataclass(frozen=True)
class VisionConfig:
    """`vision_config` of the official checkpoint: the ViT that turns pixel patches into text-sized embeddings."""

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    in_channels: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge_size: int
    out_hidden_size: int
    num_position_embeddings: int
    hidden_act: str = "gelu_pytorch_tanh"
    rope_theta: float = 10_000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Values per flattened patch: channels x temporal patch x patch x patch."""
        return self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VisionConfig:
        if raw.get("deepstack_visual_indexes"):
            raise ValueError("vision_config.deepstack_visual_indexes is not supported (Qwen3.5 has none)")
        rope = dict(raw.get("rope_parameters") or {})
        return cls(
            depth=int(raw.get("depth", 27)),
            hidden_size=int(raw.get("hidden_size", 1152)),
            intermediate_size=int(raw.get("intermediate_size", 4304)),
            num_heads=int(raw.get("num_heads", 16)),
            in_channels=int(raw.get("in_channels", 3)),
            patch_size=int(raw.get("patch_size", 16)),
            temporal_patch_size=int(raw.get("temporal_patch_size", 2)),
            spatial_merge_size=int(raw.get("spatial_merge_size", 2)),
            out_hidden_size=int(raw.get("out_hidden_size", 3584)),
            num_position_embeddings=int(raw.get("num_position_embeddings", 2304)),
            hidden_act=str(raw.get("hidden_act", "gelu_pytorch_tanh")),
            rope_theta=float(rope.get("rope_theta", 10_000.0)),
        )


@dataclass(frozen=True)
class ModelConfig:
    """The whole checkpoint config: text model plus what we need to know of vision and MTP."""

    text: TextConfig
    raw: dict[str, Any] = field(compare=False, repr=False)
    image_token_id: int | None = None
    video_token_id: int | None = None
    vision_start_token_id: int | None = None
    vision_end_token_id: int | None = None
    vision: VisionConfig | None = None
    mtp_num_hidden_layers: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        text_raw = raw.get("text_config", raw)
        rope = dict(text_raw.get("rope_parameters") or text_raw.get("rope_scaling") or {})
        rope_theta = rope.get("rope_theta", text_raw.get("rope_theta", 10_000_000))
        num_layers = int(text_raw["num_hidden_layers"])
        layer_types = text_raw.get("layer_types")
        if layer_types is None:
            interval = int(text_raw.get("full_attention_interval", 4))
            layer_types = [
                "full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(num_layers)
            ]
        for kind in layer_types:
            if kind not in ("linear_attention", "full_attention"):
                raise ValueError(f"unknown layer type {kind!r} in config")
        hidden = int(text_raw["hidden_size"])
        heads = int(text_raw["num_attention_heads"])
        eos = text_raw.get("eos_token_id")
        text = TextConfig(
            vocab_size=int(text_raw["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(text_raw["intermediate_size"]),
            num_hidden_layers=num_layers,
            num_attention_heads=heads,
            num_key_value_heads=int(text_raw["num_key_value_heads"]),
            head_dim=int(text_raw.get("head_dim") or hidden // heads),
            layer_types=tuple(layer_types[:num_layers]),
            linear_conv_kernel_dim=int(text_raw["linear_conv_kernel_dim"]),
            linear_key_head_dim=int(text_raw["linear_key_head_dim"]),
            linear_value_head_dim=int(text_raw["linear_value_head_dim"]),
            linear_num_key_heads=int(text_raw["linear_num_key_heads"]),
            linear_num_value_heads=int(text_raw["linear_num_value_heads"]),
            rms_norm_eps=float(text_raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope_theta),
            partial_rotary_factor=float(rope.get("partial_rotary_factor", text_raw.get("partial_rotary_factor", 1.0))),
            mrope_section=tuple(rope.get("mrope_section", [11, 11, 10])),  # type: ignore[arg-type]
            mrope_interleaved=bool(rope.get("mrope_interleaved", True)),
            max_position_embeddings=int(text_raw.get("max_position_embeddings", 262144)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", text_raw.get("tie_word_embeddings", True))),
            eos_token_id=eos if isinstance(eos, int) else None,
            hidden_act=str(text_raw.get("hidden_act", "silu")),
            attention_bias=bool(text_raw.get("attention_bias", False)),
        )
        return cls(
            text=text,
            raw=raw,
            image_token_id=raw.get("image_token_id"),
            video_token_id=raw.get("video_token_id"),
            vision_start_token_id=raw.get("vision_start_token_id"),
            vision_end_token_id=raw.get("vision_end_token_id"),
            vision=VisionConfig.from_dict(raw["vision_config"]) if "vision_config" in raw else None,
            mtp_num_hidden_layers=int(text_raw.get("mtp_num_hidden_layers", 0)),
        )

    @property
    def has_vision(self) -> bool:
        return self.vision is not None

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def qwen35_4b(cls) -> ModelConfig:
        """The official Qwen3.5-4B config shipped inside the package (works offline)."""
        text = resources.files("qwen35").joinpath("assets/qwen3.5-4b/config.json").read_text()
        return cls.from_dict(json.loads(text))
