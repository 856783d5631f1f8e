"""EngineArgs: one value from the command line (`generate` and `serve` alike) or from `LLM(...)` keyword arguments."""

from __future__ import annotations

import dataclasses

import pytest

from qwen35.cli import build_parser
from qwen35.engine.args import EngineArgs
from qwen35.model.weights import OFFICIAL_REPO


def test_default_model_is_the_official_checkpoint():
    assert EngineArgs().model == OFFICIAL_REPO


@pytest.mark.parametrize("command", [["generate", "hi"], ["serve"]])
def test_cli_flags_build_engine_args(command):
    parser = build_parser()
    flags = ["--model", "/ckpt", "--dummy-weights", "--dtype", "bfloat16", "--device", "cpu", "--max-model-len", "256",
             "--max-num-seqs", "3", "--max-num-batched-tokens", "64", "--kv-cache-gb", "0.5", "--block-size", "32",
             "--prefix-checkpoints", "0", "--max-waiting", "7", "--kv-cache-dtype", "bfloat16",
             "--memory-utilization", "0.5"]
    args = EngineArgs.from_cli_args(parser.parse_args([*command, *flags]))
    assert args == EngineArgs(model="/ckpt", dummy_weights=True, dtype="bfloat16", device="cpu", max_model_len=256,
                              max_num_seqs=3, max_num_batched_tokens=64, kv_cache_gb=0.5, block_size=32,
                              prefix_checkpoints=0, max_waiting=7, kv_cache_dtype="bfloat16", memory_utilization=0.5)
    assert EngineArgs.from_cli_args(parser.parse_args(command)) == EngineArgs()


def test_engine_args_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        EngineArgs().model = "x"  # type: ignore[misc]
