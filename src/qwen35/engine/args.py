"""EngineArgs: the one value that says how to build an engine (vLLM's `EngineArgs`).

Owns the construction options, their defaults and their command-line flags (`add_cli_args` / `from_cli_args`,
shared by `qwen35 generate` and `qwen35 serve`; `LLM(...)` builds one from its keyword arguments). Imports no
torch and no model: `engine.build` turns it into an engine. Invariant: a field left at None means "the default for
the device" and is resolved in one place, `engine.build`.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

# The official checkpoint (the same id as `qwen35.model.weights.OFFICIAL_REPO`; the engine may not import the model).
DEFAULT_MODEL = "Qwen/Qwen3.5-4B"


@dataclass(frozen=True)
class EngineArgs:
    model: str = DEFAULT_MODEL  # checkpoint directory or hub id
    dummy_weights: bool = False  # random weights of the real config: no download
    dtype: str | None = None  # float32 | bfloat16; None: float32 on CPU, bfloat16 on CUDA
    # none | int8 | int4 | bf16 weight-only formats of the linears and the tied LM head; None: int8 on CPU when
    # dtype is not given either (an explicit dtype alone stays the exact dense path), none on CUDA
    quantization: str | None = None
    device: str | None = None  # cpu | cuda; None: cuda when available
    max_model_len: int | None = None  # None: the model's (262144), lowered to what the KV cache holds
    max_num_seqs: int = 16  # sequences decoded together (one GDN state slot each)
    max_num_batched_tokens: int | None = None  # token budget per step; None: 8192 on CUDA, 512 on CPU
    kv_cache_gb: float | None = None  # memory for attention KV blocks; None: what the memory allows (engine.memory)
    # float32 | bfloat16 | float16 keys and values; None: bfloat16 on CPU with quantised weights, else the model's
    kv_cache_dtype: str | None = None
    memory_utilization: float = 0.9  # share of the device's total memory the engine may use (weights included)
    block_size: int = 16  # tokens per KV block (and prefix-cache granularity)
    prefix_checkpoints: int | None = None  # GDN state checkpoints for prefix caching; 0 disables; None: 64 / 8
    max_waiting: int = 512  # requests held (running + queued); beyond it new ones are refused (HTTP 429 / 529)
    eos_token_ids: tuple[int, ...] | None = None  # None: from the checkpoint's generation_config
    progress: bool = True  # show a progress bar while loading weights

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add the engine's flags to a command (their dests are the field names)."""
        defaults = EngineArgs()
        parser.add_argument("--model", default=defaults.model, help="checkpoint directory or hub id")
        parser.add_argument("--dummy-weights", action="store_true", help="random weights: no checkpoint download")
        parser.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: float32 on CPU, bf16 on CUDA)")
        parser.add_argument("--quantization", default=None, choices=["none", "int8", "int4", "bf16"],
                            help="weight format of the linears and the tied LM head, quantised at load "
                                 "(default: int8 on CPU unless --dtype is given, none on CUDA)")
        parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
        parser.add_argument("--max-model-len", type=int, default=None,
                            help="context length (default: the model's 262144, lowered to what the memory holds)")
        parser.add_argument("--max-num-seqs", type=int, default=defaults.max_num_seqs,
                            help="requests decoded together")
        parser.add_argument("--max-num-batched-tokens", type=int, default=None,
                            help="tokens computed per step (default: 8192 on CUDA, 512 on CPU)")
        parser.add_argument("--kv-cache-gb", type=float, default=None,
                            help="memory for attention KV blocks (default: what --memory-utilization leaves after "
                                 "the weights, the GDN states and a reserve)")
        parser.add_argument("--kv-cache-dtype", default=None, choices=["float32", "bfloat16", "float16"],
                            help="dtype of the cached keys and values (default: bfloat16 on CPU with quantised "
                                 "weights, else the model's dtype)")
        parser.add_argument("--memory-utilization", type=float, default=defaults.memory_utilization,
                            help="share of the device's memory (RAM on CPU) the engine may use, weights included "
                                 "(default 0.9)")
        parser.add_argument("--block-size", type=int, default=defaults.block_size, help="tokens per KV block")
        parser.add_argument("--prefix-checkpoints", type=int, default=None,
                            help="GDN state checkpoints kept for prefix caching; 0 disables (default: 64 CUDA, 8 CPU)")
        parser.add_argument("--max-waiting", type=int, default=defaults.max_waiting,
                            help="requests held, running and queued; beyond it new ones get 429 (OpenAI) / 529 "
                                 "(Anthropic) with retry-after")
        return parser

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> EngineArgs:
        """The EngineArgs of parsed flags; fields without a flag keep their defaults."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})
