"""The compiled decode attention (`qwen35_paged_attn_decode`) against its torch twin (`use_kernel=False`): the 4B's
head layout and a group of one, float32 and bfloat16 caches, scrambled block tables, contexts from 1 token to past
the padded path's limit, and a batch that mixes prefill chunks with decode rows (only the decode rows take the
kernel)."""

from __future__ import annotations

import pytest
import torch

from qwen35.model.attention import paged_attention
from qwen35.model.batch import ForwardBatch
from qwen35.model.kernels import build


def _case(heads: int, kv_heads: int, dim: int, block: int, contexts: list[int], queries: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    num_blocks = sum(-(-c // block) for c in contexts) + 3
    key_cache = torch.randn(num_blocks, block, kv_heads, dim, generator=g)
    value_cache = torch.randn(num_blocks, block, kv_heads, dim, generator=g)
    order = torch.randperm(num_blocks, generator=g).tolist()  # scrambled: tables jump around the cache
    tables = []
    for c in contexts:
        tables.append([order.pop() for _ in range(-(-c // block))])
    total = sum(queries)
    batch = ForwardBatch(input_ids=torch.zeros(total, dtype=torch.long), positions=torch.zeros(3, total),
                         query_lens=queries, context_lens=contexts, block_tables=tables,
                         state_slots=list(range(len(contexts))), slot_mapping=torch.zeros(total, dtype=torch.long))
    query = torch.randn(sum(queries), heads, dim, generator=g)
    return query, key_cache, value_cache, batch


@pytest.mark.parametrize(("heads", "kv_heads", "dim", "block", "contexts", "queries"), [
    (16, 4, 256, 16, [1, 17, 80, 300, 9000], [1, 1, 1, 1, 1]),  # the 4B's attention; one row past 8192
    (4, 4, 64, 4, [5, 3, 12], [1, 3, 1]),  # a group of one, a prefill chunk between decode rows
])
def test_decode_attention_kernel_equals_its_twin(heads, kv_heads, dim, block, contexts, queries) -> None:
    if build.library() is None:
        pytest.skip("compiled kernels unavailable here: the twin is the path")
    query, key_cache, value_cache, batch = _case(heads, kv_heads, dim, block, contexts, queries)
    scale = dim**-0.5
    got = paged_attention(query, key_cache, value_cache, batch, scale)
    want = paged_attention(query, key_cache, value_cache, batch, scale, use_kernel=False)
    assert torch.allclose(got, want, atol=2e-6, rtol=1e-5), (got - want).abs().max()


def test_a_bfloat16_cache_is_read_as_is() -> None:
    """The quantised CPU model's default cache: bfloat16 rows widened exactly, as the twin's `.to(float32)` does."""
    if build.library() is None:
        pytest.skip("compiled kernels unavailable here: the twin is the path")
    query, key_cache, value_cache, batch = _case(16, 4, 256, 16, [7, 130, 41], [1, 1, 1], seed=1)
    kc, vc = key_cache.bfloat16(), value_cache.bfloat16()
    got = paged_attention(query, kc, vc, batch, 0.0625)
    want = paged_attention(query, kc, vc, batch, 0.0625, use_kernel=False)
    assert torch.allclose(got, want, atol=2e-6, rtol=1e-5), (got - want).abs().max()


def test_a_half_cache_takes_the_torch_path() -> None:
    query, key_cache, value_cache, batch = _case(8, 2, 16, 4, [6, 9], [1, 1])
    kc, vc = key_cache.half(), value_cache.half()
    got = paged_attention(query, kc, vc, batch, 0.25)
    assert torch.equal(got, paged_attention(query, kc, vc, batch, 0.25, use_kernel=False))
