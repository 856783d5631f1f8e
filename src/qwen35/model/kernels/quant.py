"""Weight-only quantised formats (int8, int4 group-wise, bf16) and their matrix product, compiled or pure torch.

Owns the formats (group of 32 along the input dimension, float16 scales: int8 symmetric in -127..127 as llama.cpp's
q8_0, int4 as q4_0 with nibble - 8), weight quantisation (load time, torch), and `qmatmul`: the compiled kernel
(`build.library()`) when present, else its pure-torch twin, which computes the same thing: the activation rows are
quantised to int8 per group once (d = max|x| / 127, round half to even), each group's integer dot product is exact,
groups are summed in float32. Rows beyond `PREFILL_ROWS` (prefill) take dequantised weight tiles into the float32
GEMM instead, except on the interleaved-tile (VNNI) kernels, which are faster than that GEMM at any row count. Imports torch and `build` only. Invariant: kernel and twin differ only by the order of
the float32 sum over groups.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

from qwen35.model.kernels.build import library, use_vnni

GROUP = 32
FORMATS = ("int8", "int4", "bf16")
# Above this many rows the row-layout kernels (and the twins) take dequantised weight tiles into MKL's fp32 GEMM.
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
    layout: str = "rows"  # "rows": row-major as documented in cpu_quant.cpp; "tiles8": interleaved 8-row tiles

    @property
    def nbytes(self) -> int:
        extra = 0 if self.scales is None else self.scales.numel() * self.scales.element_size()
        return self.data.numel() * self.data.element_size() + extra


def supports(fmt: str, in_features: int) -> bool:
    return fmt == "bf16" or in_features % GROUP == 0


def choose_layout(fmt: str, out_features: int) -> str:
    """Interleaved 8-row tiles where the VNNI kernels run them (int8 / int4, rows a multiple of 8), else rows."""
    return "tiles8" if fmt in ("int8", "int4") and out_features % 8 == 0 and use_vnni() else "rows"


def storage_shapes(
    fmt: str, out_features: int, in_features: int, layout: str = "rows"
) -> tuple[tuple[int, int], torch.dtype, tuple[int, int] | None]:
    """(data shape, data dtype, scales shape or None) of a weight in `fmt` (same bytes in either layout)."""
    if layout == "tiles8":
        tiles, per_tile = out_features // 8, 8 * in_features
        if fmt == "int8":
            return (tiles, per_tile), torch.int8, (tiles, 8 * in_features // GROUP)
        return (tiles, per_tile // 2), torch.uint8, (tiles, 8 * in_features // GROUP)
    groups = (out_features, in_features // GROUP)
    if fmt == "int8":
        return (out_features, in_features), torch.int8, groups
    if fmt == "int4":
        return (out_features, in_features // 2), torch.uint8, groups
    if fmt == "bf16":
        return (out_features, in_features), torch.bfloat16, None
    raise ValueError(f"unknown weight format {fmt!r}; choose one of {FORMATS}")


def _tile_views(qw: QuantizedWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of tiled data / scales indexed [tile, lane, ...] = one row: int8 [T, 8, G, 8 chunks, 4],
    int4 [T, 8, G, 4, 4] (bytes), scales [T, 8, G]."""
    assert qw.scales is not None
    tiles, groups = qw.out_features // 8, qw.in_features // GROUP
    chunks = 8 if qw.fmt == "int8" else 4
    data = qw.data.view(tiles, groups, chunks, 8, 4).permute(0, 3, 1, 2, 4)
    return data, qw.scales.view(tiles, groups, 8).permute(0, 2, 1)


def _row_index(rows: torch.Tensor | slice, num_rows: int) -> torch.Tensor:
    return torch.arange(num_rows)[rows] if isinstance(rows, slice) else rows


@torch.no_grad()
def quantize_into(w: torch.Tensor, qw: QuantizedWeight, offset: int = 0) -> None:
    """Quantise dense weight rows w [n, K] (any float dtype) into rows [offset, offset + n) of qw."""
    for start in range(0, w.shape[0], _TILE_ROWS):
        rows = w[start : start + _TILE_ROWS].float()
        first, stop = offset + start, offset + start + rows.shape[0]
        if qw.fmt == "bf16":
            qw.data[first:stop].copy_(rows.to(torch.bfloat16))
            continue
        lib = library() if rows.device.type == "cpu" else None
        if lib is not None:  # same arithmetic as below, compiled
            rows = rows.contiguous()
            q = torch.empty(rows.shape[0], rows.shape[1] // GROUP, GROUP, dtype=torch.int8)
            scale = torch.empty(rows.shape[0], rows.shape[1] // GROUP, dtype=torch.float16)
            lib.qwen35_quantize_weight(_ptr(rows), rows.shape[0], rows.shape[1], int(qw.fmt == "int4"), _ptr(q),
                                       _ptr(scale))
            _write_rows(qw, first, stop, q if qw.fmt == "int8" else q.view(torch.uint8), scale)
            continue
        groups = rows.reshape(rows.shape[0], -1, GROUP)
        if qw.fmt == "int8":
            scale = (groups.abs().amax(-1) / 127).half()
            inv = torch.where(scale.float() > 0, 1.0 / scale.float(), 0.0)
            q = torch.round(groups * inv[..., None]).clamp_(-127, 127).to(torch.int8)
        else:  # int4: the value of largest magnitude maps to -8 exactly (q4_0), the rest round into 0..15
            idx = groups.abs().argmax(-1, keepdim=True)
            peak = torch.gather(groups, -1, idx).squeeze(-1)
            scale = (peak / -8).half()
            inv = torch.where(scale.float() != 0, 1.0 / scale.float(), 0.0)
            q = (torch.round(groups * inv[..., None]) + 8).clamp_(0, 15).to(torch.uint8)
        _write_rows(qw, first, stop, q, scale)


def _write_rows(qw: QuantizedWeight, first: int, stop: int, q: torch.Tensor, scale: torch.Tensor) -> None:
    """Store quantised rows q [n, G, 32] (int8 values or int4 nibbles 0..15) and scales [n, G]."""
    assert qw.scales is not None
    n = q.shape[0]
    if qw.layout == "rows":
        if qw.fmt == "int8":
            qw.data[first:stop].copy_(q.reshape(n, -1))
        else:
            qw.data[first:stop].copy_((q[..., : GROUP // 2] | (q[..., GROUP // 2 :] << 4)).reshape(n, -1))
        qw.scales[first:stop].copy_(scale)
        return
    data, scales = _tile_views(qw)
    if qw.fmt == "int8":
        rows = q.reshape(n, -1, 8, 4)
    else:  # byte (i, j) of a group: low nibble element 4i + j, high nibble element 16 + 4i + j
        rows = q[..., :16].reshape(n, -1, 4, 4) | (q[..., 16:].reshape(n, -1, 4, 4) << 4)
    if first % 8 == 0 and n % 8 == 0:  # whole tiles: one strided copy
        data[first // 8 : stop // 8].copy_(rows.reshape(n // 8, 8, *rows.shape[1:]))
        scales[first // 8 : stop // 8].copy_(scale.reshape(n // 8, 8, -1))
        return
    index = torch.arange(first, stop)
    data[index // 8, index % 8] = rows
    scales[index // 8, index % 8] = scale


def integer_rows(qw: QuantizedWeight, rows: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Some rows' integer values as float32 [n, G, 32] (int8: q; int4: nibble - 8) and scales float32 [n, G]."""
    assert qw.scales is not None
    if qw.layout == "tiles8":
        index = _row_index(rows, qw.out_features)
        data, scales = _tile_views(qw)
        raw, scale = data[index // 8, index % 8], scales[index // 8, index % 8]  # [n, G, chunks, 4], [n, G]
        n = raw.shape[0]
        if qw.fmt == "int8":
            return raw.float().reshape(n, -1, GROUP), scale.float()
        low, high = (raw & 0x0F).reshape(n, -1, 16), (raw >> 4).reshape(n, -1, 16)
        return torch.cat([low, high], dim=-1).float() - 8, scale.float()
    data, scale = qw.data[rows], qw.scales[rows].float()
    n = data.shape[0]
    if qw.fmt == "int8":
        return data.float().reshape(n, -1, GROUP), scale
    packed = data.reshape(n, -1, GROUP // 2)
    return torch.cat([(packed & 0x0F), (packed >> 4)], dim=-1).float() - 8, scale


def dequantize_rows(qw: QuantizedWeight, rows: torch.Tensor | slice) -> torch.Tensor:
    """Float32 values of some weight rows (an index tensor or a slice): the embedding lookup reads only those."""
    if qw.fmt == "bf16":
        return qw.data[rows].float()
    values, scale = integer_rows(qw, rows)
    return (values * scale[..., None]).reshape(values.shape[0], qw.in_features)


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
    chunk = max(8, min(_TWIN_CHUNK, 2**24 // (num_groups * m)))  # temporaries [G, M, chunk] stay under 64 MB
    for start in range(0, qw.out_features, chunk):
        stop = min(start + chunk, qw.out_features)
        wg, wscale = integer_rows(qw, slice(start, stop))
        dots = torch.bmm(xg, wg.permute(1, 2, 0))  # [G, M, n]: exact integers in float32
        scale = xd.T[:, :, None] * wscale.T[:, None, :]  # [G, M, n]
        out[:, start:stop] = (dots * scale).sum(0)
    return out


def _kernel_small(lib: ctypes.CDLL, x: torch.Tensor, qw: QuantizedWeight) -> torch.Tensor:
    m, k = x.shape
    out = torch.empty(m, qw.out_features, dtype=torch.float32)
    if qw.fmt == "bf16":
        fn = lib.qwen35_bf16_gemm_avx512 if use_vnni() else lib.qwen35_bf16_gemm
        fn(_ptr(x), m, k, _ptr(qw.data), qw.out_features, _ptr(out))
        return out
    assert qw.scales is not None
    xq = torch.empty(m, k, dtype=torch.int8)
    xd = torch.empty(m, k // GROUP, dtype=torch.float32)
    if qw.layout == "tiles8":
        xs = torch.empty(m, k // GROUP, dtype=torch.int32)
        lib.qwen35_quantize_act(_ptr(x), m, k, _ptr(xq), _ptr(xd), None)
        lib.qwen35_act_group_sums(_ptr(xq), m, k, _ptr(xs))
        fn = lib.qwen35_q8_gemm_tiled if qw.fmt == "int8" else lib.qwen35_q4_gemm_tiled
        fn(_ptr(xq), _ptr(xd), _ptr(xs), m, k, _ptr(qw.data), _ptr(qw.scales), qw.out_features, _ptr(out))
        return out
    if use_vnni():
        xc = torch.empty(m, k // 4, dtype=torch.int32)
        lib.qwen35_quantize_act(_ptr(x), m, k, _ptr(xq), _ptr(xd), None)
        lib.qwen35_act_corrections(_ptr(xq), m, k, 128 if qw.fmt == "int8" else 8, _ptr(xc))
        fn = lib.qwen35_q8_gemm_vnni if qw.fmt == "int8" else lib.qwen35_q4_gemm_vnni
        fn(_ptr(xq), _ptr(xd), _ptr(xc), m, k, _ptr(qw.data), _ptr(qw.scales), qw.out_features, _ptr(out))
        return out
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
    if qw.layout == "tiles8":  # start / stop are multiples of 8 (_TILE_ROWS is, and so is out_features)
        lib.qwen35_tiled_dequant(_ptr(qw.data), _ptr(qw.scales), qw.in_features, start // 8, stop // 8,
                                 int(qw.fmt == "int4"), _ptr(tile))
        return tile
    fn = lib.qwen35_q8_dequant if qw.fmt == "int8" else lib.qwen35_q4_dequant
    fn(_ptr(qw.data), _ptr(qw.scales), qw.in_features, start, stop, _ptr(tile))
    return tile


def qmatmul(x: torch.Tensor, qw: QuantizedWeight, use_kernel: bool = True) -> torch.Tensor:
    """x [..., K] (any float dtype) times the weight's transpose: float32 [..., N].

    `use_kernel=False` forces the pure-torch twin (tests; machines without a compiler take it anyway)."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, qw.in_features).float().contiguous()
    lib = library() if use_kernel and x2.device.type == "cpu" else None
    # The interleaved VNNI kernels outrun MKL's fp32 GEMM at every row count measured (2-4x at 512 rows); the row
    # layout's kernels only at decode sizes.
    if x2.shape[0] > PREFILL_ROWS and qw.layout != "tiles8":
        out = torch.empty(x2.shape[0], qw.out_features, dtype=torch.float32, device=x2.device)
        for start in range(0, qw.out_features, _TILE_ROWS):
            stop = min(start + _TILE_ROWS, qw.out_features)
            torch.mm(x2, _dequant_tile(lib, qw, start, stop).T, out=out[:, start:stop])
        return out.reshape(*lead, qw.out_features)
    out = _kernel_small(lib, x2, qw) if lib is not None else _twin_small(x2, qw)
    return out.reshape(*lead, qw.out_features)
