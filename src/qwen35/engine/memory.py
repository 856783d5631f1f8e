"""Memory sizing of the cache pools: how many KV blocks to allocate and the default max_model_len, from the memory
the device has once the weights are loaded.

Owns `MemoryInfo` (total and available bytes where the cache lives), `host_memory()` (Linux: /proc/meminfo, and
the cgroup v2 limit when it is lower) and `plan_kv_cache`, pure arithmetic tested without a model. Imports no torch
(the runner measures CUDA memory and the model's bytes). The rule: the engine may use `utilization` of the total
memory (weights included) and never more than is available now; from that it takes the GDN state slots and
prefix checkpoints, a reserve for activations and the allocator, and the attention workspace of the longest
sequence (one layer's keys and values gathered at a time, plus the batched decode rows); the rest is KV cache.
Invariant: the pool always holds one sequence of the plan's max_model_len, and an explicit --max-model-len that the
memory cannot hold is refused with what it needs, never silently lowered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

GiB = 2**30


@dataclass(frozen=True)
class MemoryInfo:
    total_bytes: int  # the device's memory (RAM, or the cgroup limit; or the GPU's)
    available_bytes: int  # what can still be allocated now (the loaded weights are already counted out)


@dataclass(frozen=True)
class KvPlan:
    num_blocks: int
    max_model_len: int
    budget_bytes: int  # memory the rule allows for KV blocks (before the max_num_seqs cap)
    memory_bound: bool  # max_model_len was lowered to what the memory holds

    def kv_bytes(self, block_bytes: int) -> int:
        return self.num_blocks * block_bytes


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def host_memory() -> MemoryInfo | None:
    """RAM of this machine as Linux reports it (MemTotal / MemAvailable), bounded by a cgroup v2 memory limit;
    None where /proc/meminfo does not exist."""
    fields: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name] = int(parts[0]) * 1024
    except OSError:
        return None
    if "MemTotal" not in fields:
        return None
    total = fields["MemTotal"]
    available = fields.get("MemAvailable", fields.get("MemFree", 0))
    limit = _read_int("/sys/fs/cgroup/memory.max")
    used = _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and limit < total:
        total = limit
        if used is not None:
            available = min(available, max(0, limit - used))
    return MemoryInfo(total, available)


def plan_kv_cache(
    *,
    model_max_len: int,
    block_size: int,
    block_bytes: int,
    max_num_seqs: int,
    memory: MemoryInfo | None,
    model_bytes: int,
    fixed_bytes: int,
    workspace_bytes_per_token: int,
    workspace_fixed_bytes: int = 0,
    requested_len: int | None = None,
    kv_cache_bytes: int | None = None,
    fallback_kv_bytes: int = GiB,
    utilization: float = 0.9,
    reserve_bytes: int = GiB,
) -> KvPlan:
    """The KV pool and max_model_len.

    `block_bytes`: one KV block (every attention layer); `model_bytes`: the loaded weights; `fixed_bytes`: state
    slots + prefix checkpoints; the attention workspace is `workspace_fixed_bytes` + `workspace_bytes_per_token` x
    max_model_len. `kv_cache_bytes` (--kv-cache-gb) overrides the rule; without `memory` (not Linux) the pool is
    `fallback_kv_bytes`. Raises ValueError when the requested length, or a single block, does not fit.
    """
    target = min(requested_len or model_max_len, model_max_len)
    token_bytes = block_bytes / block_size
    if kv_cache_bytes is not None or memory is None:
        budget = kv_cache_bytes if kv_cache_bytes is not None else fallback_kv_bytes
        free = None
    else:
        share = min(memory.available_bytes, int(utilization * memory.total_bytes) - model_bytes)
        free = share - fixed_bytes - reserve_bytes - workspace_fixed_bytes
        budget = free - workspace_bytes_per_token * target
        if requested_len is None and budget < token_bytes * target:
            # Memory-bound: the workspace shrinks with the length too, so solve C * (kv + workspace) = free.
            budget = int(free * token_bytes / (token_bytes + workspace_bytes_per_token))
    cap = max_num_seqs * math.ceil(target / block_size) + max_num_seqs  # more than max_num_seqs full ones never use
    num_blocks = min(max(0, int(budget)) // block_bytes, cap)
    capacity = num_blocks * block_size
    if requested_len is not None and capacity < target:
        need = target * token_bytes / GiB
        if free is None:
            raise ValueError(f"max_model_len {target} needs {need:.1f} GiB of KV cache; --kv-cache-gb allows "
                             f"{capacity} tokens")
        raise ValueError(
            f"max_model_len {target} needs {need:.1f} GiB of KV cache and "
            f"{workspace_bytes_per_token * target / GiB:.1f} GiB of attention workspace; "
            f"{max(0, free) / GiB:.1f} GiB is free for both after the weights ({model_bytes / GiB:.1f} GiB), the state "
            f"slots and prefix checkpoints ({fixed_bytes / GiB:.1f} GiB) and a {reserve_bytes / GiB:.1f} GiB reserve. "
            "Try --kv-cache-dtype bfloat16, --quantization int4, fewer --max-num-seqs / --prefix-checkpoints, a "
            "higher --memory-utilization or a shorter --max-model-len")
    if num_blocks < 1:
        raise ValueError(f"no memory left for the KV cache after the weights ({model_bytes / GiB:.1f} GiB)")
    return KvPlan(num_blocks=num_blocks, max_model_len=min(target, capacity), budget_bytes=int(budget),
                  memory_bound=capacity < target)
