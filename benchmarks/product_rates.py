"""Rates of the quantised weight products at decode sizes: GMAC/s and weight GB/s for 1 and 8 activation rows, with
the weight resident in cache (N=1024: the compute ceiling) and streamed from memory (N=18432).

`python benchmarks/product_rates.py` (int8 and int4, K=2560, the 4B's hidden size; the kernel pool at torch's
thread count when the library loads, best of 3 timed loops). Shows whether a product is bound by reading the weight
(M=1) or by the multiplies (M=8).
"""

from __future__ import annotations

import time

import torch

from qwen35.model.kernels.build import library
from qwen35.model.quantized import QuantLinear


def main() -> None:
    assert library() is not None, "the compiled kernels are needed"
    print(f"kernel pool {torch.get_num_threads()} threads")
    for fmt in ("int8", "int4"):
        for n, reps in ((1024, 400), (18432, 20)):
            lin = QuantLinear(2560, n, fmt)
            lin.load_rows(0, torch.randn(n, 2560))
            for m in (1, 8):
                x = torch.randn(m, 2560)
                lin(x)
                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    for _ in range(reps):
                        lin(x)
                    best = min(best, (time.perf_counter() - start) / reps)
                print(f"{fmt} N={n} K=2560 M={m}: {1e3 * best:.3f} ms, {m * n * 2560 / best / 1e9:.1f} GMAC/s, "
                      f"weight {lin.weight_q.nbytes / best / 1e9:.1f} GB/s")


if __name__ == "__main__":
    main()
