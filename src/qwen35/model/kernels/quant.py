"""Weight-only quantised formats (int8, int4 group-wise, bf16) and their matrix product, compiled or pure torch.

Owns the formats (group of 32 along the input dimension, float16 scales: int8 symmetric in -127..127 as llama.cpp's
q8_0, int4 as q4_0 with nibble - 8), weight quantisation (load time, torch), and `qmatmul`: the compiled kernel
(`build.library()`) when present, else its pure-torch twin, which computes the same thing: the activation rows are
quantised to int8 per group once (d = max|x| / 127, round half to even), each group's integer dot product is exact,
groups are summed in float32. Rows beyond `PREFILL_ROWS` (prefill) take dequantised weight tiles into the float32
GEMM instead, in both paths. Imports torch and `build` only. Invariant: kernel and twin differ only by the order of
the float32 sum over groups.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

from qwen35.model.kernels.build import library

GROUP = 32
FORMATS = ("int8", "int4", "bf16")
# Above this many rows the integer kernel is compute-bound and MKL's fp32 GEMM on dequantised tiles is faster.
PREFILL_ROWS = 64
_TILE_ROWS = 2048  # weight rows dequantised at a time for the prefill GEMM (2048 x 9216 x 4 B = 75 MB at most)
_TWIN_CHUNK = 8192  # weight rows per step of the twin's group-wise product (bounds its temporaries)


@dataclass
class QuantizedWeight:
    """One [out_features, in_features] weight in a quantised format (tensors are owned by a module's buffers)."""

    fmt: str
    data: torch.Tensor  # int8 [N, K] | uint8 [N, K/2] | bfloat16 [N, K]
    scales: torch.Tensor | None  # float16 [N, K/GROUP]; None for bf16
    out_features: int
    in_features: int

    @property
    def nbytes(self) -> int:
        extra = 0 if self.scales is None else self.scales.numel() * self.scales.element_size()
        return self.data.numel() * self.data.element_size() + extra


def supports(fmt: str, in_features: int) -> bool:
    return fmt == "bf16" or in_features % GROUP == 0


def storage_shapes(fmt: str, out_features: int, in_features: int) -> tuple[tuple[int, int], torch.dtype, tuple[int, int] | None]:
    """(data shape, data dtype, scales shape or None) of a weight in `fmt`."""
    groups = (out_features, in_features // GROUP)
    if fmt == "int8":
        return (out_features, in_features), torch.int8, groups
    if fmt == "int4":
        return (out_features, in_features // 2), torch.uint8, groups
    if fmt == "bf16":
        return (out_features, in_features), torch.bfloat16, None
    raise ValueError(f"unknown weight format {fmt!r}; choose one of {FORMATS}")


@torch.no_grad()
def quantize_into(w: torch.Tensor, fmt: str, data: torch.Tensor, scales: torch.Tensor | None) -> None:
    """Quantise dense weight rows w [n, K] (any float dtype) into data / scales (row slices of the same n)."""
    for start in range(0, w.shape[0], _TILE_ROWS):
        rows = w[start : start + _TILE_ROWS].float()
        stop = start + rows.shape[0]
        if fmt == "bf16":
            data[start:stop].copy_(rows.to(torch.bfloat16))
            continue
        assert scales is not None
        groups = rows.reshape(rows.shape[0], -1, GROUP)
        if fmt == "int8":
            scale = (groups.abs().amax(-1) / 127).half()
            inv = torch.where(scale.float() > 0, 1.0 / scale.float(), 0.0)
            q = torch.round(groups * inv[..., None]).clamp_(-127, 127).to(torch.int8)
            data[start:stop].copy_(q.reshape(rows.shape[0], -1))
        else:  # int4: the value of largest magnitude maps to -8 exactly (q4_0), the rest round into 0..15
            idx = groups.abs().argmax(-1, keepdim=True)
            peak = torch.gather(groups, -1, idx).squeeze(-1)
            scale = (peak / -8).half()
            inv = torch.where(scale.float() != 0, 1.0 / scale.float(), 0.0)
            q = (torch.round(groups * inv[..., None]) + 8).clamp_(0, 15).to(torch.uint8)
            packed = q[..., : GROUP // 2] | (q[..., GROUP // 2 :] << 4)
            data[start:stop].copy_(packed.reshape(rows.shape[0], -1))
        scales[start:stop].copy_(scale)


def dequantize_rows(qw: QuantizedWeight, rows: torch.Tensor | slice) -> torch.Tensor:
    """Float32 values of some weight rows (an index tensor or a slice): the embedding lookup reads only those."""
    data = qw.data[rows]
    if qw.fmt == "bf16":
        return data.float()
    assert qw.scales is not None
    scale = qw.scales[rows].float()
    if qw.fmt == "int8":
        values = data.float().reshape(*data.shape[:-1], -1, GROUP)
    else:
        packed = data.reshape(*data.shape[:-1], -1, GROUP // 2)
        values = torch.cat([(packed & 0x0F), (packed >> 4)], dim=-1).float() - 8
    return (values * scale[..., None]).reshape(*data.shape[:-1], qw.in_features)


def _ptr(t: torch.Tensor) -> int:
    return int(t.data_ptr())


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin of the kernel's activation quantisation: x float32 [M, K] -> (int8 [M, K], scales float32 [M, K/32])."""
    groups = x.reshape(x.shape[0], -1, GROUP)
    scale = groups.abs().amax(-1) / 127
    inv = torch.where(scale > 0, 1.0 / scale, 0.0)
    q = torch.round(groups * inv[..., None]).to(torch.int8)
    return q.reshape(x.shape), scale


def _twin_small(x: torch.Tensor, qw: QuantizedWeight) -> torch.Tensor:
    if qw.fmt == "bf16":
        return x @ qw.data.float().T
    xq, xd = quantize_activations(x)
    m, num_groups = xq.shape[0], xd.shape[1]
    xg = xq.float().reshape(m, num_groups, GROUP).transpose(0, 1)  # [G, M, 32]
    out = torch.empty(m, qw.out_features, dtype=torch.float32, device=x.device)
    assert qw.scales is not None
    for start in range(0, qw.out_features, _TWIN_CHUNK):
        stop = min(start + _TWIN_CHUNK, qw.out_features)
        if qw.fmt == "int8":
            wg = qw.data[start:stop].float().reshape(stop - start, num_groups, GROUP)
        else:
            packed = qw.data[start:stop].reshape(stop - start, num_groups, GROUP // 2)
            wg = torch.cat([(packed & 0x0F), (packed >> 4)], dim=-1).float() - 8
        dots = torch.bmm(xg, wg.permute(1, 2, 0))  # [G, M, n]: exact integers in float32
        scale = xd.T[:, :, None] * qw.scales[start:stop].float().T[:, None, :]  # [G, M, n]
        out[:, start:stop] = (dots * scale).sum(0)
    return out


def _kernel_small(lib: ctypes.CDLL, x: torch.Tensor, qw: QuantizedWeight) -> torch.Tensor:
    m, k = x.shape
    out = torch.empty(m, qw.out_features, dtype=torch.float32)
    if qw.fmt == "bf16":
        lib.qwen35_bf16_gemm(_ptr(x), m, k, _ptr(qw.data), qw.out_features, _ptr(out))
        return out
    assert qw.scales is not None
    xq = torch.empty(m, k, dtype=torch.int8)
    xd = torch.empty(m, k // GROUP, dtype=torch.float32)
    if qw.fmt == "int8":
        lib.qwen35_quantize_act(_ptr(x), m, k, _ptr(xq), _ptr(xd), None)
        lib.qwen35_q8_gemm(_ptr(xq), _ptr(xd), m, k, _ptr(qw.data), _ptr(qw.scales), qw.out_features, _ptr(out))
    else:
        x8 = torch.empty(m, k // GROUP, 16, dtype=torch.int16)
        lib.qwen35_quantize_act(_ptr(x), m, k, _ptr(xq), _ptr(xd), _ptr(x8))
        lib.qwen35_q4_gemm(_ptr(xq), _ptr(xd), _ptr(x8), m, k, _ptr(qw.data), _ptr(qw.scales), qw.out_features,
                           _ptr(out))
    return out


def _dequant_tile(lib: ctypes.CDLL | None, qw: QuantizedWeight, start: int, stop: int) -> torch.Tensor:
    if lib is None or qw.fmt == "bf16":
        return dequantize_rows(qw, slice(start, stop))
    assert qw.scales is not None
    tile = torch.empty(stop - start, qw.in_features, dtype=torch.float32)
    fn = lib.qwen35_q8_dequant if qw.fmt == "int8" else lib.qwen35_q4_dequant
    fn(_ptr(qw.data), _ptr(qw.scales), qw.in_features, start, stop, _ptr(tile))
    return tile


def qmatmul(x: torch.Tensor, qw: QuantizedWeight, use_kernel: bool = True) -> torch.Tensor:
    """x [..., K] (any float dtype) times the weight's transpose: float32 [..., N].

    `use_kernel=False` forces the pure-torch twin (tests; machines without a compiler take it anyway)."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, qw.in_features).float().contiguous()
    lib = library() if use_kernel and x2.device.type == "cpu" else None
    if x2.shape[0] > PREFILL_ROWS:
        out = torch.empty(x2.shape[0], qw.out_features, dtype=torch.float32, device=x2.device)
        for start in range(0, qw.out_features, _TILE_ROWS):
            stop = min(start + _TILE_ROWS, qw.out_features)
            torch.mm(x2, _dequant_tile(lib, qw, start, stop).T, out=out[:, start:stop])
        return out.reshape(*lead, qw.out_features)
    out = _kernel_small(lib, x2, qw) if lib is not None else _twin_small(x2, qw)
    return out.reshape(*lead, qw.out_features)
