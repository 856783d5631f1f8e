"""Engine construction from one `EngineArgs`: load the model and allocate its cache through the runner, size the
cache pools, wire the engine.

Owns the device defaults of every None field of `EngineArgs` and feeds the sizing rule (`engine.memory`: KV
blocks and the effective max_model_len from the memory left after the weights; one GDN state slot per concurrent
sequence) with what only a loaded model knows. Never imports the model:
loading and cache allocation go through `engine.runner`. Invariant: the pools can always hold one sequence of
max_model_len tokens, so an admitted request can never wait forever.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from qwen35.engine.args import EngineArgs
from qwen35.engine.async_engine import AsyncEngine
from qwen35.engine.engine import EngineConfig, LLMEngine
from qwen35.engine.memory import GiB, plan_kv_cache
from qwen35.engine.runner import (
    attention_workspace,
    build_runner,
    device_memory,
    kv_block_bytes,
    load_model,
    model_bytes,
    state_pool_bytes,
)

log = logging.getLogger(__name__)

# Qwen3.5's generation_config stops on <|im_end|> and <|endoftext|>.
DEFAULT_EOS_TOKEN_IDS = (248046, 248044)


def _eos_ids(model_dir: Path | None, config_eos: int | None) -> tuple[int, ...]:
    if model_dir is not None and (model_dir / "generation_config.json").is_file():
        eos = json.loads((model_dir / "generation_config.json").read_text()).get("eos_token_id")
        if isinstance(eos, int):
            eos = [eos]
        if eos:
            ids = [int(t) for t in eos]
            for default in DEFAULT_EOS_TOKEN_IDS:  # chat turns end with <|im_end|> even if the file omits it
                if default not in ids:
                    ids.append(default)
            return tuple(ids)
    ids = list(DEFAULT_EOS_TOKEN_IDS)
    if config_eos is not None and config_eos not in ids:
        ids.append(config_eos)
    return tuple(ids)


def build_engine(args: EngineArgs) -> LLMEngine:
    loaded = load_model(args.model, dummy_weights=args.dummy_weights, dtype=args.dtype, device=args.device,
                        progress=args.progress, quantization=args.quantization)
    text = loaded.config.text
    on_gpu = loaded.device.type == "cuda"
    block_size, max_num_seqs = args.block_size, args.max_num_seqs
    # Prefix caching keeps GDN state checkpoints (~50 MB each for the 4B in fp32): a handful on CPU.
    checkpoints = args.prefix_checkpoints if args.prefix_checkpoints is not None else (64 if on_gpu else 8)
    # A quantised CPU model caches keys and values in bfloat16 (half of float32: the 4B's 256K context fits 24 GB);
    # the exact float32 path (quantization none) and CUDA keep the model's dtype.
    kv_name = args.kv_cache_dtype or ("bfloat16" if not on_gpu and loaded.quantization != "none" else None)
    block_bytes = kv_block_bytes(loaded, block_size, kv_name)
    weights = model_bytes(loaded)
    workspace_per_token, workspace_fixed = attention_workspace(loaded, max_num_seqs, kv_name)
    plan = plan_kv_cache(
        model_max_len=text.max_position_embeddings, block_size=block_size, block_bytes=block_bytes,
        max_num_seqs=max_num_seqs, memory=device_memory(loaded), model_bytes=weights,
        fixed_bytes=state_pool_bytes(loaded, max_num_seqs, checkpoints),
        workspace_bytes_per_token=workspace_per_token, workspace_fixed_bytes=workspace_fixed,
        requested_len=args.max_model_len,
        kv_cache_bytes=None if args.kv_cache_gb is None else int(args.kv_cache_gb * GiB),
        utilization=args.memory_utilization, reserve_bytes=2 * GiB if on_gpu else GiB,
    )
    num_blocks, limit = plan.num_blocks, plan.max_model_len
    log.info("KV cache: %d blocks of %d tokens (%.2f GiB, %s), max_model_len %d%s; weights %.2f GiB",
             num_blocks, block_size, plan.kv_bytes(block_bytes) / GiB, kv_name or str(loaded.dtype).removeprefix("torch."), limit,
             " (lowered to what the memory holds)" if plan.memory_bound else "", weights / GiB)
    batched = args.max_num_batched_tokens or (8192 if on_gpu else 512)
    eos = args.eos_token_ids or _eos_ids(loaded.model_dir, text.eos_token_id)
    runner = build_runner(loaded, num_blocks=num_blocks, block_size=block_size, num_state_slots=max_num_seqs,
                          num_checkpoints=checkpoints, eos_token_ids=eos, kv_cache_dtype=kv_name)
    config = EngineConfig(
        max_model_len=limit, eos_token_ids=eos, max_num_seqs=max_num_seqs, max_num_batched_tokens=batched,
        block_size=block_size, num_kv_blocks=num_blocks, num_state_slots=max_num_seqs,
        num_prefix_checkpoints=checkpoints, max_waiting=args.max_waiting,
    )
    return LLMEngine(runner, config, model_dir=loaded.model_dir)


def build_async_engine(args: EngineArgs) -> AsyncEngine:
    """`build_engine`'s engine, its loop running on a background thread."""
    return AsyncEngine(build_engine(args))
