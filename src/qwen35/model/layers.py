"""Small building blocks of Qwen3.5: zero-centred RMSNorm, gated RMSNorm, SwiGLU MLP, interleaved MRoPE.

Torch, and the compiled RMSNorm (`qwen35_rmsnorm`, float32 on CPU; the torch ops are its twin); imports nothing
else from qwen35 but the config and the kernel library. Invariant: numerics follow transformers 5.23
(`modeling_qwen3_5.py`) operation for operation, so float32 results agree to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qwen35.model.config import TextConfig
from qwen35.model.kernels.build import library

# Below this many rows, MKL's GEMM on a transposed weight (what F.linear asks for) runs 2-3x under memory
# bandwidth on AVX2 CPUs; W @ x.T streams the weight in its stored order (benchmarks/README.md, decode profile).
_SMALL_ROWS = 128


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, with the bandwidth-friendly product for decode-sized inputs on CPU."""
    if x.device.type == "cpu" and x.dim() == 2 and x.shape[0] <= _SMALL_ROWS:
        out = (weight @ x.T).T.contiguous()
        return out if bias is None else out + bias
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear (same parameter names) whose forward uses `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    """Zero-centred RMSNorm: weight stored as an offset from 1 (initialised to zeros)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, use_kernel: bool = True) -> torch.Tensor:
        lib = library() if use_kernel and x.device.type == "cpu" else None
        if lib is not None and x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            rows = x.reshape(-1, x.shape[-1]).contiguous()
            out = torch.empty_like(rows)
            lib.qwen35_rmsnorm(rows.data_ptr(), rows.shape[0], rows.shape[1], self.weight.data_ptr(), self.eps,
                               out.data_ptr())
            return out.reshape(x.shape)
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * (1.0 + self.weight.float())).type_as(x)


class GatedRMSNorm(nn.Module):
    """RMSNorm then multiply by silu(gate): the output norm of Gated DeltaNet (plain weight, init ones)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        out = self.weight * xf.to(dtype)
        out = out * F.silu(gate.float())
        return out.to(dtype)


class MLP(nn.Module):
    """SwiGLU feed-forward."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj: nn.Module = Linear(intermediate_size, hidden_size, bias=False)
        self.gate_up: nn.Module | None = None  # quantised: gate|up fused (`model.quantized`), the two above removed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is not None:
            gate, up = self.gate_up.split(x)
            return self.down_proj(F.silu(gate) * up)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MRotaryEmbedding(nn.Module):
    """Partial rotary embedding over three position streams (temporal, height, width), interleaved.

    With `mrope_interleaved`, frequency i takes its position from stream T, H or W by i mod 3 (within the H and W
    sections), as transformers' `recomposition_frequencies` does. For text all three streams are equal.
    """

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        dim = config.rotary_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.mrope_section = config.mrope_section
        self.interleaved = config.mrope_interleaved

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # positions: [3, T] -> cos, sin: [T, rotary_dim]
        freqs = positions[..., None].float() * self.inv_freq.to(positions.device)  # [3, T, dim/2]
        composed = freqs[0].clone()
        if self.interleaved:
            for stream, offset in ((1, 1), (2, 2)):
                idx = slice(offset, self.mrope_section[stream] * 3, 3)
                composed[..., idx] = freqs[stream, ..., idx]
        else:
            t, h, _ = self.mrope_section
            composed[..., t : t + h] = freqs[1, ..., t : t + h]
            composed[..., t + h :] = freqs[2, ..., t + h :]
        emb = torch.cat((composed, composed), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first rotary_dim channels of x [T, heads, head_dim] with cos/sin [T, rotary_dim]."""
    rot_dim = cos.shape[-1]
    x_rot, x_pass = x[..., :rot_dim], x[..., rot_dim:]
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    half = rot_dim // 2
    rotated = torch.cat((-x_rot[..., half:], x_rot[..., :half]), dim=-1)
    return torch.cat((x_rot * cos + rotated * sin, x_pass), dim=-1)
