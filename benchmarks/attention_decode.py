"""One 4B attention layer's decode over the paged cache: the compiled kernel (`qwen35_paged_attn_decode`) against its
torch twin (padded gather + SDPA), A/B alternating in one process so the machine's drift falls on both.

`python benchmarks/attention_decode.py` prints the median of 7 calls of each per (batch, context): 16 query heads,
4 kv heads, head dim 256, bfloat16 cache in 16-token blocks (the quantised CPU model's default), torch at 1 thread
as in its decode steps, the kernel pool at the thread count torch had when the library loaded.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernels"))
from test_attention_kernel import _case  # noqa: E402  (the test's random paged cache, scrambled block tables)

from qwen35.model.attention import paged_attention  # noqa: E402
from qwen35.model.kernels.build import library  # noqa: E402


def main() -> None:
    assert library() is not None, "the compiled kernels are needed for the A/B"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print(f"kernel pool {threads} threads, torch 1 thread; median of 7 calls each, alternating")
    for batch, ctx in ((1, 96), (8, 96), (1, 4096), (8, 4096), (8, 16384)):
        query, kc, vc, fwd = _case(16, 4, 256, 16, [ctx - i for i in range(batch)], [1] * batch)
        kc, vc = kc.bfloat16(), vc.bfloat16()
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(7):
            for use_kernel in (True, False):
                start = time.perf_counter()
                paged_attention(query, kc, vc, fwd, 0.0625, use_kernel=use_kernel)
                times[use_kernel].append(time.perf_counter() - start)
        mine, twin = (1e3 * statistics.median(times[k]) for k in (True, False))
        print(f"batch {batch} x {ctx} tokens: kernel {mine:.2f} ms, torch {twin:.2f} ms per layer ({twin / mine:.1f}x)")


if __name__ == "__main__":
    main()
