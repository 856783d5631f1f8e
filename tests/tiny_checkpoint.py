"""Builds tiny random Qwen3.5 checkpoints in the official layout with transformers' save_pretrained.

The reference model (transformers 5.23 `Qwen3_5ForConditionalGeneration`) saves them; our loader must read them
and compute what the reference computes. Adds MTP tensors by hand (transformers drops them) so that skipping them
on load is exercised too.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import torch

VOCAB_SIZE = 248320  # the real padded vocabulary, so the real tokenizer's ids are valid


def tiny_config_dict(num_layers: int = 4, interval: int = 2) -> dict:
    layer_types = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(num_layers)]
    return {
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "model_type": "qwen3_5",
        "image_token_id": 248056,
        "video_token_id": 248057,
        "vision_start_token_id": 248053,
        "vision_end_token_id": 248054,
        "tie_word_embeddings": True,
        "text_config": {
            "model_type": "qwen3_5_text",
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "layer_types": layer_types,
            "full_attention_interval": interval,
            "linear_conv_kernel_dim": 4,
            "linear_key_head_dim": 16,
            "linear_value_head_dim": 16,
            "linear_num_key_heads": 2,
            "linear_num_value_heads": 4,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
            "attn_output_gate": True,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": True,
            "eos_token_id": 248044,
            "mtp_num_hidden_layers": 1,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000000,
                "partial_rotary_factor": 0.25,
                "mrope_interleaved": True,
                "mrope_section": [2, 1, 1],
            },
        },
        "vision_config": {
            "model_type": "qwen3_5",
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [],
        },
    }


def build_reference_model(config_dict: dict, seed: int = 0):
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    torch.manual_seed(seed)
    config = Qwen3_5Config(**config_dict)
    model = Qwen3_5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # the default init leaves norms at identity; randomise so they are tested too
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0.0, 0.1) if "linear_attn.norm" not in name else param.uniform_(0.5, 1.5)
    return model


def write_tiny_checkpoint(path: Path, num_layers: int = 4, seed: int = 0) -> Path:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    model = build_reference_model(tiny_config_dict(num_layers), seed)
    model.save_pretrained(path, safe_serialization=True)
    hidden = 64
    mtp = {
        "mtp.fc.weight": torch.randn(hidden, 2 * hidden) * 0.02,
        "mtp.norm.weight": torch.zeros(hidden),
        "mtp.pre_fc_norm_embedding.weight": torch.zeros(hidden),
        "mtp.pre_fc_norm_hidden.weight": torch.zeros(hidden),
    }
    save_file(mtp, str(path / "model-mtp.safetensors"), metadata={"format": "pt"})
    index_path = path / "model.safetensors.index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
        for name in mtp:
            index["weight_map"][name] = "model-mtp.safetensors"
        index_path.write_text(json.dumps(index, indent=2))
    assets = resources.files("qwen35").joinpath("assets/qwen3.5-4b")
    shutil.copyfile(str(assets.joinpath("chat_template.jinja")), path / "chat_template.jinja")
    try:
        from qwen35.processor.tokenizer import load_tokenizer

        load_tokenizer(None).save_pretrained(path)
    except (ImportError, AttributeError):
        pass
    return path
