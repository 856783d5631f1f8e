"""The chunked GDN's triangular inverse (doubling product) equals a triangular solve."""

from __future__ import annotations

import torch

from qwen35.model.deltanet import unit_lower_inverse


def test_unit_lower_inverse_equals_triangular_solve():
    g = torch.Generator().manual_seed(0)
    for size in (1, 5, 64):
        lower = (torch.randn(3, 2, size, size, generator=g) * 0.3).tril(-1)
        rhs = torch.randn(3, 2, size, 7, generator=g)
        want = torch.linalg.solve_triangular(lower + torch.eye(size), rhs, upper=False, unitriangular=True)
        assert torch.allclose(unit_lower_inverse(lower) @ rhs, want, atol=1e-4, rtol=1e-4)
