"""Checkpoint loading: official layout (vision/MTP skipped on purpose), clear errors, dummy weights."""

from __future__ import annotations

import shutil

import pytest
import torch

from qwen35.model.config import ModelConfig
from qwen35.model.weights import CheckpointError, build_model, load_config, resolve_checkpoint


def test_official_4b_config_parses():
    config = ModelConfig.qwen35_4b()
    text = config.text
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (2560, 32, 248320)
    assert len(text.deltanet_layer_ids) == 24 and len(text.attention_layer_ids) == 8
    assert text.rotary_dim == 64 and text.mrope_section == (11, 11, 10)
    assert config.has_vision and config.mtp_num_hidden_layers == 1


def test_loads_official_layout_with_mtp_and_vision(tiny_checkpoint):
    from safetensors import safe_open

    stored = set()
    for f in tiny_checkpoint.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as h:
            stored.update(h.keys())
    assert any(n.startswith("model.visual.") for n in stored) and any(n.startswith("mtp.") for n in stored)
    model = build_model(tiny_checkpoint, load_config(tiny_checkpoint), torch.float32, progress=False)
    with safe_open(str(tiny_checkpoint / "model.safetensors"), framework="pt") as h:
        want = h.get_tensor("model.language_model.layers.1.self_attn.q_proj.weight")
    assert torch.equal(model.language_model.layers[1].self_attn.q_proj.weight, want)


def test_missing_tensor_is_a_clear_error(tiny_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["model.language_model.norm.weight"]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="lacks 1 tensors"):
        build_model(broken, load_config(broken), torch.float32, progress=False)


def test_hub_id_offline_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="--dummy-weights"):
        resolve_checkpoint("Qwen/Qwen3.5-4B-does-not-exist")
    assert resolve_checkpoint("Qwen/Qwen3.5-4B", download=False) is None
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint("./no/such/dir")


def test_dummy_weights_are_finite(tiny_checkpoint):
    model = build_model(None, load_config(tiny_checkpoint), torch.bfloat16, dummy_weights=True, progress=False)
    for name, param in model.named_parameters():
        assert param.dtype == torch.bfloat16
        assert torch.isfinite(param.float()).all(), name
