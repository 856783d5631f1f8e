"""Shared fixtures: tiny random Qwen3.5 checkpoints in the official layout, and the transformers reference."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny_checkpoint import write_tiny_checkpoint  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory in the official layout (config.json, safetensors + index-less shard, MTP tensors, tokenizer,
    chat template) saved by transformers' save_pretrained from a random tiny model."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-qwen35"))


@pytest.fixture(scope="session")
def reference_model(tiny_checkpoint: Path):
    """transformers 5.23 Qwen3_5ForConditionalGeneration loaded from the same checkpoint (float32)."""
    from transformers import Qwen3_5ForConditionalGeneration

    return Qwen3_5ForConditionalGeneration.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def reference_logprobs(reference_model):
    """Function: token ids -> [T, V] float32 log-softmax of the reference's logits."""

    def run(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            logits = reference_model(input_ids=torch.tensor([ids])).logits[0]
        return torch.log_softmax(logits.float(), dim=-1)

    return run
