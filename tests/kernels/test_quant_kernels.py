"""Compiled int8 / int4 / bf16 kernels against their pure-torch twins, and the formats' quantisation error."""

from __future__ import annotations

import pytest
import torch

from qwen35.model.kernels import build
from qwen35.model.kernels.quant import (
    GROUP,
    PREFILL_ROWS,
    QuantizedWeight,
    dequantize_rows,
    integer_rows,
    qmatmul,
    quantize_activations,
    quantize_into,
    storage_shapes,
)


def make_weight(fmt: str, n: int, k: int, seed: int = 0, layout: str = "rows") -> tuple[torch.Tensor, QuantizedWeight]:
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 0.02
    shape, dtype, scales_shape = storage_shapes(fmt, n, k, layout)
    data = torch.empty(shape, dtype=dtype)
    scales = torch.empty(scales_shape, dtype=torch.float16) if scales_shape else None
    qw = QuantizedWeight(fmt, data, scales, n, k, layout)
    quantize_into(w[: n // 2], qw)  # two loads at row offsets, as fused projections are filled
    quantize_into(w[n // 2 :], qw, offset=n // 2)
    return w, qw


# (format, layout): the interleaved 8-row tiles run where the CPU has AVX512-VNNI.
CASES = [("int8", "rows"), ("int4", "rows"), ("bf16", "rows"), ("int8", "tiles8"), ("int4", "tiles8")]


def _skip_unrunnable(layout: str) -> None:
    if layout == "tiles8" and not build.use_vnni():
        pytest.skip("interleaved tiles need AVX512-VNNI (this CPU runs the row layout)")


@pytest.fixture(scope="module")
def lib():
    library = build.library()
    if library is None:
        pytest.skip("compiled kernels unavailable here (no compiler or no AVX2/FMA/F16C): the twin is the path")
    return library


@pytest.mark.parametrize("fmt,layout", CASES)
def test_quantisation_error_is_bounded_by_the_step(fmt, layout):
    w, qw = make_weight(fmt, 96, 256, layout=layout)
    err = (dequantize_rows(qw, slice(0, 96)) - w).abs()
    if fmt == "bf16":
        assert (err <= w.abs() * 2**-8).all()
        return
    assert qw.scales is not None
    step = integer_rows(qw, slice(0, 96))[1].abs().repeat_interleave(GROUP, dim=1)
    # int4: the largest magnitude maps to -8 exactly, so a value of the opposite sign as large clamps at +7.
    assert (err <= step * (0.5 if fmt == "int8" else 1.0) + 1e-7).all()
    # Rows gathered by index (the embedding lookup) are the same values as a slice.
    rows = torch.tensor([5, 0, 95, 5])
    assert torch.equal(dequantize_rows(qw, rows), dequantize_rows(qw, slice(0, 96))[rows])


@pytest.mark.parametrize("fmt,layout", CASES)
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 9, 16, 33, PREFILL_ROWS + 7])
def test_kernel_equals_twin(lib, fmt, layout, rows):
    _skip_unrunnable(layout)
    # Output rows not a multiple of the kernels' 16-row chunk (nor of 8 for the row layout).
    n, k = (203 if layout == "rows" else 200), 320
    w, qw = make_weight(fmt, n, k, seed=rows, layout=layout)
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(100 + rows))
    got = qmatmul(x, qw)
    twin = qmatmul(x, qw, use_kernel=False)
    assert got.shape == twin.shape == (rows, n)
    # Integer group dot products are exact on both sides: only the float32 sum over groups rounds differently.
    assert (got - twin).abs().max().item() < 1e-5
    # And both are the quantised product: close to the dense one.
    dense = x @ w.T
    tolerance = {"int8": 0.03, "int4": 0.15, "bf16": 0.01}[fmt]
    assert (twin - dense).abs().max().item() < tolerance * dense.abs().max().item()


def test_activation_quantisation_matches_kernel(lib):
    x = torch.randn(3, 128, generator=torch.Generator().manual_seed(1)) * 3
    x[1, :32] = 0  # an all-zero group has scale 0 and quantises to zeros
    q, d = quantize_activations(x)
    xq = torch.empty(3, 128, dtype=torch.int8)
    xd = torch.empty(3, 4, dtype=torch.float32)
    x8 = torch.empty(3, 4, 16, dtype=torch.int16)
    lib.qwen35_quantize_act(x.data_ptr(), 3, 128, xq.data_ptr(), xd.data_ptr(), x8.data_ptr())
    assert torch.equal(q, xq)
    assert torch.equal(d, xd)
    pairs = q.reshape(3, 4, 16, 2).to(torch.int16).sum(-1) * 8
    assert torch.equal(pairs, x8)
    assert d[1, 0].item() == 0 and (xq[1, :32] == 0).all()


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_prefill_tiles_equal_dense_dequantised_product(lib, fmt):
    # The row layout's prefill; interleaved tiles keep the integer kernel at every row count (test above).
    _, qw = make_weight(fmt, 72, 96)
    x = torch.randn(PREFILL_ROWS + 1, 96, generator=torch.Generator().manual_seed(2))
    want = x @ dequantize_rows(qw, slice(0, 72)).T
    assert torch.allclose(qmatmul(x, qw), want, atol=1e-5)
    assert torch.allclose(qmatmul(x, qw, use_kernel=False), want, atol=1e-5)


def test_disabled_kernels_fall_back_to_the_twin(monkeypatch):
    monkeypatch.setenv("QWEN35_KERNELS", "0")
    build.library.cache_clear()
    try:
        assert build.library() is None
        _, qw = make_weight("int8", 40, 64)
        x = torch.randn(2, 64)
        assert torch.equal(qmatmul(x, qw), qmatmul(x, qw, use_kernel=False))
    finally:
        monkeypatch.undo()  # the environment as it was (CI runs this file with QWEN35_KERNELS=0 too)
        build.library.cache_clear()


def test_compiles_into_a_fresh_cache_dir(tmp_path, monkeypatch):
    if build._compiler() is None or not build.cpu_supported() or build.library() is None:
        pytest.skip("no compiler / CPU features, or kernels disabled")
    monkeypatch.setenv("QWEN35_CACHE_DIR", str(tmp_path))
    build.library.cache_clear()
    try:
        assert build.library() is not None
        assert list(tmp_path.glob("kernels/*/libqwen35_cpu.so"))
    finally:
        monkeypatch.undo()
        build.library.cache_clear()


def test_batched_gdn_recurrent_kernel_equals_per_sequence_twin(lib):
    from qwen35.model.deltanet import l2norm, recurrent_gated_delta_rule_batched_

    g = torch.Generator().manual_seed(4)
    batch, heads, dk, dv = 3, 4, 16, 24
    q = l2norm(torch.randn(batch, heads, dk, generator=g)) * dk**-0.5
    k = l2norm(torch.randn(batch, heads, dk, generator=g))
    v = torch.randn(batch, heads, dv, generator=g)
    decay = -torch.rand(batch, heads, generator=g) * 2
    beta = torch.rand(batch, heads, generator=g)
    states = torch.randn(6, heads, dk, dv, generator=g) * 0.1
    slots = [4, 0, 2]  # scattered slots; 1, 3, 5 must stay untouched
    twin_states = states.clone()
    got = recurrent_gated_delta_rule_batched_(q, k, v, decay, beta, states, slots)
    want = recurrent_gated_delta_rule_batched_(q, k, v, decay, beta, twin_states, slots, use_kernel=False)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(states, twin_states, atol=1e-5)


def test_conv_step_kernel_equals_twin(lib):
    """The GDN conv's decode step: same outputs and the same shifted windows, other slots untouched."""
    from qwen35.model.deltanet import conv_step_

    g = torch.Generator().manual_seed(5)
    channels, kernel = 40, 4
    x = torch.randn(3, channels, generator=g)
    weight = torch.randn(channels, kernel, generator=g)
    states = torch.randn(6, channels, kernel - 1, generator=g)
    slots = torch.tensor([4, 0, 2])
    twin_states = states.clone()
    got = conv_step_(x, weight, states, slots)
    want = conv_step_(x, weight, twin_states, slots, use_kernel=False)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(states, twin_states)  # the shift is a copy: exact
    assert torch.equal(states[slots, :, -1], x)


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_single_row_tile_kernel_with_an_odd_group_count(lib, fmt):
    """One activation row over K = 9 groups and N = 24 rows: three tiles, so the last tile of the tile-pair work
    items is unpaired (the batch-1 path for every tile, an odd group count through the group loop)."""
    _skip_unrunnable("tiles8")
    w, qw = make_weight(fmt, 24, 9 * GROUP, seed=3, layout="tiles8")
    x = torch.randn(1, 9 * GROUP, generator=torch.Generator().manual_seed(9))
    assert (qmatmul(x, qw) - qmatmul(x, qw, use_kernel=False)).abs().max().item() < 1e-5


@pytest.mark.parametrize("rows", [1, 3, 9])
def test_bf16_kernel_handles_an_input_width_off_the_vector_width(lib, rows):
    """bf16 takes any in_features: the vector loops' scalar tails (K = 100: 3 x 32 + 4, 6 x 16 + 4) on both ISAs."""
    w, qw = make_weight("bf16", 40, 100, seed=rows)
    x = torch.randn(rows, 100, generator=torch.Generator().manual_seed(rows))
    assert (qmatmul(x, qw) - qmatmul(x, qw, use_kernel=False)).abs().max().item() < 1e-5


@pytest.mark.parametrize("shape", [(1, 2560), (7, 4, 256), (40, 64)])
def test_rmsnorm_kernel_equals_twin(lib, shape):
    """The decoder's zero-centred RMSNorm in one call: rows of any leading shape (q/k norms are per head)."""
    from qwen35.model.layers import RMSNorm

    g = torch.Generator().manual_seed(len(shape))
    norm = RMSNorm(shape[-1], 1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(shape[-1], generator=g))
    x = torch.randn(shape, generator=g) * 3
    got, want = norm(x), norm(x, use_kernel=False)
    assert got.shape == x.shape and torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def _gdn_layer(seed: int):
    import dataclasses

    from qwen35.model.config import ModelConfig
    from qwen35.model.deltanet import GatedDeltaNet

    # the 4B's head shapes (16 key heads of 128, 32 value heads: each key head shared by two), a narrow hidden size
    config = dataclasses.replace(ModelConfig.qwen35_4b().text, hidden_size=64)
    layer = GatedDeltaNet(config, 0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in layer.parameters():
            param.copy_(torch.randn(param.shape, generator=g) * (0.5 if param.dim() > 1 else 1.0))
    return layer, g


def test_fused_gdn_decode_kernel_equals_twin(lib):
    """One compiled call for a GDN layer's decode token (conv, l2norm, gates, delta rule, gated norm) against the
    torch composition: same outputs, same conv windows and recurrent states, other slots untouched; the rows are
    strided views of one fused projection as the model passes them."""
    layer, g = _gdn_layer(6)
    batch, slots = 3, [4, 0, 2]
    c, vd, hv = layer.conv_dim, layer.value_dim, layer.num_v_heads
    proj = torch.randn(batch, c + vd + 2 * hv, generator=g)
    mixed, z, b, a = torch.split(proj, [c, vd, hv, hv], dim=-1)
    conv = torch.randn(6, c, layer.conv_kernel - 1, generator=g)
    rec = torch.randn(6, hv, layer.head_k_dim, layer.head_v_dim, generator=g) * 0.1
    twin_conv, twin_rec = conv.clone(), rec.clone()
    with torch.no_grad():
        got = layer.decode_step_(mixed, z, b, a, conv, rec, slots)
        want = layer.decode_step_(mixed, z, b, a, twin_conv, twin_rec, slots, use_kernel=False)
    assert got.shape == (batch, vd)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    assert torch.allclose(rec, twin_rec, atol=1e-5)
    assert torch.equal(conv, twin_conv)  # the window shift is a copy: exact
    untouched = [1, 3, 5]
    assert torch.equal(rec[untouched], twin_rec[untouched]) and torch.equal(conv[untouched], twin_conv[untouched])


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_compiled_weight_quantisation_equals_torch(lib, monkeypatch, fmt):
    from qwen35.model.kernels import quant

    w = torch.randn(40, 128, generator=torch.Generator().manual_seed(9)) * 0.05
    w[3, :32] = 0  # an all-zero group
    compiled = make_weight(fmt, 40, 128)[1]
    quantize_into(w, compiled)
    monkeypatch.setattr(quant, "library", lambda: None)
    plain = make_weight(fmt, 40, 128)[1]
    quantize_into(w, plain)
    assert torch.equal(compiled.data, plain.data)
    assert compiled.scales is not None and plain.scales is not None
    assert torch.equal(compiled.scales, plain.scales)
