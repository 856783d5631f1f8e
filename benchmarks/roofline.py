"""Machine ceilings measured in the same run as the benchmark: memory read bandwidth and fp32 GEMM throughput.

Owns the measurements and the ideal-time model (a forward pass can be no faster than reading its weights once at
the measured bandwidth, nor than its matmul FLOPs at the measured GEMM rate). Imports torch only.
Invariant: every ceiling is measured with the thread count the benchmark itself uses, best of several repeats,
so "% of roofline" compares like with like.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Ceilings:
    buffer_read_gbps: float  # torch.sum over one large fresh buffer
    weight_read_gbps: float  # torch.sum over every weight tensor a decode step reads (same bytes, same layout)
    gemm_gflops: float  # fp32 (or model dtype) matmul of prefill-like shape
    gemm_shape: tuple[int, int, int]

    @property
    def read_gbps(self) -> float:
        """The bandwidth the roofline uses: the better of the two, so the % is never flattered."""
        return max(self.buffer_read_gbps, self.weight_read_gbps)


@dataclass(frozen=True)
class ModelCost:
    bytes_per_step: int  # weight bytes one forward pass reads (tied embedding counted once, as the LM head)
    matmul_params_per_token: int  # params multiplied per token in the decoder (excludes the LM head)
    lm_head_params: int

    def flops_per_token(self, with_logits: bool) -> float:
        return 2.0 * (self.matmul_params_per_token + (self.lm_head_params if with_logits else 0))


def _best_of(repeats: int, fn: object) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def measure_buffer_read(num_bytes: int, repeats: int = 5) -> float:
    """GB/s of torch.sum over a fresh float32 buffer of `num_bytes` (1e9 bytes per GB)."""
    buf = torch.ones(num_bytes // 4, dtype=torch.float32)
    buf.sum()  # touch every page before timing
    seconds = _best_of(repeats, buf.sum)
    del buf
    return num_bytes / seconds / 1e9


def measure_tensor_read(tensors: Iterable[torch.Tensor], repeats: int = 2) -> float:
    """GB/s of summing each tensor once: the read pattern of a decode step over the same storage."""
    items = list(tensors)
    total = sum(t.numel() * t.element_size() for t in items)

    def read_all() -> None:
        for t in items:
            t.sum()

    return total / _best_of(repeats, read_all) / 1e9


def measure_gemm(m: int, k: int, n: int, dtype: torch.dtype = torch.float32, repeats: int = 3) -> float:
    """GFLOP/s of an [m, k] @ [k, n] matmul (a prefill-sized linear layer)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    a @ b  # warm up the BLAS kernels and thread pool
    seconds = _best_of(repeats, lambda: a @ b)
    return 2.0 * m * k * n / seconds / 1e9


def weight_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Distinct parameter tensors (tied weights once)."""
    seen: set[int] = set()
    out: list[torch.Tensor] = []
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p.detach())
    return out


def model_cost(model: nn.Module, embed: torch.Tensor, output: torch.Tensor) -> ModelCost:
    """Bytes and matmul parameters of one forward pass. An untied embedding table is not read (one row is)."""
    tensors = weight_tensors(model)
    total_bytes = sum(t.numel() * t.element_size() for t in tensors)
    tied = embed.data_ptr() == output.data_ptr()
    if not tied:
        total_bytes -= embed.numel() * embed.element_size()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    matmul = sum(m.weight.numel() for m in linears if m.weight.data_ptr() != output.data_ptr())
    return ModelCost(bytes_per_step=total_bytes, matmul_params_per_token=matmul, lm_head_params=output.numel())


def ideal_seconds(cost: ModelCost, ceilings: Ceilings, num_tokens: int, num_logit_rows: int) -> float:
    """Lower bound for one forward pass over `num_tokens` tokens that computes `num_logit_rows` logits."""
    memory = cost.bytes_per_step / (ceilings.read_gbps * 1e9)
    flops = num_tokens * cost.flops_per_token(False) + num_logit_rows * 2.0 * cost.lm_head_params
    return max(memory, flops / (ceilings.gemm_gflops * 1e9))


__all__ = ["Ceilings", "ModelCost", "ideal_seconds", "measure_buffer_read", "measure_gemm",
           "measure_tensor_read", "model_cost", "weight_tensors"]
