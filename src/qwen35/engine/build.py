"""Engine construction from one `EngineArgs`: load the model and allocate its cache through the runner, size the
cache pools, wire the engine.

Owns the sizing policy (KV memory budget -> number of blocks; one GDN state slot per concurrent sequence; the
effective max_model_len) and the device defaults of every None field of `EngineArgs`. Never imports the model:
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
from qwen35.engine.runner import build_runner, kv_block_bytes, load_model

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
    kv_bytes = int((args.kv_cache_gb if args.kv_cache_gb is not None else (16.0 if on_gpu else 1.0)) * 2**30)
    num_blocks = max(1, kv_bytes // kv_block_bytes(loaded, block_size))
    limit = min(args.max_model_len or text.max_position_embeddings, text.max_position_embeddings)
    # Do not allocate more than max_num_seqs full-length sequences would ever use.
    num_blocks = min(num_blocks, max_num_seqs * (-(-limit // block_size)) + max_num_seqs)
    capacity = num_blocks * block_size
    if args.max_model_len is None and limit > capacity:
        log.warning("KV cache holds %d tokens: max_model_len lowered from %d", capacity, limit)
        limit = capacity
    elif limit > capacity:
        raise ValueError(f"max_model_len {limit} needs more KV cache than --kv-cache-gb allows ({capacity} tokens)")
    batched = args.max_num_batched_tokens or (8192 if on_gpu else 512)
    # Prefix caching keeps GDN state checkpoints (~50 MB each for the 4B in fp32): a handful on CPU.
    checkpoints = args.prefix_checkpoints if args.prefix_checkpoints is not None else (64 if on_gpu else 8)
    eos = args.eos_token_ids or _eos_ids(loaded.model_dir, text.eos_token_id)
    runner = build_runner(loaded, num_blocks=num_blocks, block_size=block_size, num_state_slots=max_num_seqs,
                          num_checkpoints=checkpoints, eos_token_ids=eos)
    config = EngineConfig(
        max_model_len=limit, eos_token_ids=eos, max_num_seqs=max_num_seqs, max_num_batched_tokens=batched,
        block_size=block_size, num_kv_blocks=num_blocks, num_state_slots=max_num_seqs,
        num_prefix_checkpoints=checkpoints, max_waiting=args.max_waiting,
    )
    return LLMEngine(runner, config, model_dir=loaded.model_dir)


def build_async_engine(args: EngineArgs) -> AsyncEngine:
    """`build_engine`'s engine, its loop running on a background thread."""
    return AsyncEngine(build_engine(args))
