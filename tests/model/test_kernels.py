"""Gated DeltaNet chunked vs recurrent paths, and paged attention vs dense causal attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qwen35.model.attention import paged_attention
from qwen35.model.batch import ForwardBatch
from qwen35.model.deltanet import chunk_gated_delta_rule, l2norm, recurrent_gated_delta_rule_


def _gdn_inputs(heads: int, length: int, dk: int, dv: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = l2norm(torch.randn(heads, length, dk, generator=g)) * dk**-0.5
    k = l2norm(torch.randn(heads, length, dk, generator=g))
    v = torch.randn(heads, length, dv, generator=g)
    decay = -torch.rand(heads, length, generator=g) * 2
    beta = torch.rand(heads, length, generator=g)
    state = torch.randn(heads, dk, dv, generator=g) * 0.1
    return q, k, v, decay, beta, state


def test_chunked_equals_recurrent_over_many_chunks():
    q, k, v, decay, beta, state = _gdn_inputs(3, 200, 16, 8)
    out_chunk, state_chunk = chunk_gated_delta_rule(q, k, v, decay, beta, state.clone(), chunk_size=64)
    s = state.clone()
    outs = [recurrent_gated_delta_rule_(q[:, t], k[:, t], v[:, t], decay[:, t], beta[:, t], s) for t in range(200)]
    out_rec = torch.stack(outs, dim=1)
    assert torch.allclose(out_chunk, out_rec, atol=1e-4)
    assert torch.allclose(state_chunk, s, atol=1e-4)


def test_chunked_split_carries_state():
    q, k, v, decay, beta, state = _gdn_inputs(2, 150, 8, 8, seed=1)
    whole, final = chunk_gated_delta_rule(q, k, v, decay, beta, state.clone())
    first, mid = chunk_gated_delta_rule(q[:, :70], k[:, :70], v[:, :70], decay[:, :70], beta[:, :70], state.clone())
    second, end = chunk_gated_delta_rule(q[:, 70:], k[:, 70:], v[:, 70:], decay[:, 70:], beta[:, 70:], mid)
    assert torch.allclose(torch.cat([first, second], dim=1), whole, atol=1e-4)
    assert torch.allclose(end, final, atol=1e-4)


def test_paged_attention_matches_dense():
    block, heads, kv_heads, dim = 4, 4, 2, 8
    g = torch.Generator().manual_seed(0)
    lens_ctx, lens_q = [11, 6, 9, 1], [3, 6, 1, 1]  # mixed: chunk after history, fresh prefill, two decodes
    key_cache = torch.zeros(32, block, kv_heads, dim)
    value_cache = torch.zeros(32, block, kv_heads, dim)
    free = list(range(31, -1, -1))
    tables, dense_k, dense_v, queries = [], [], [], []
    for ctx, nq in zip(lens_ctx, lens_q):
        table = [free.pop() for _ in range(-(-ctx // block))][::-1]  # scrambled block order
        k = torch.randn(ctx, kv_heads, dim, generator=g)
        v = torch.randn(ctx, kv_heads, dim, generator=g)
        for p in range(ctx):
            key_cache[table[p // block], p % block] = k[p]
            value_cache[table[p // block], p % block] = v[p]
        tables.append(table)
        dense_k.append(k)
        dense_v.append(v)
        queries.append(torch.randn(nq, heads, dim, generator=g))
    batch = ForwardBatch(input_ids=torch.zeros(sum(lens_q), dtype=torch.long), positions=torch.zeros(3, sum(lens_q)),
                         query_lens=lens_q, context_lens=lens_ctx, block_tables=tables, state_slots=[0, 1, 2, 3],
                         slot_mapping=torch.zeros(sum(lens_q), dtype=torch.long))
    out = paged_attention(torch.cat(queries), key_cache, value_cache, batch, dim**-0.5)
    start = 0
    for ctx, nq, q, k, v in zip(lens_ctx, lens_q, queries, dense_k, dense_v):
        k_rep = k.repeat_interleave(heads // kv_heads, dim=1).transpose(0, 1)
        v_rep = v.repeat_interleave(heads // kv_heads, dim=1).transpose(0, 1)
        scores = q.transpose(0, 1) @ k_rep.transpose(-1, -2) * dim**-0.5  # [H, nq, ctx]
        q_pos = torch.arange(ctx - nq, ctx)[:, None]
        scores = scores.masked_fill(torch.arange(ctx)[None, :] > q_pos, float("-inf"))
        want = (F.softmax(scores, dim=-1) @ v_rep).transpose(0, 1)
        assert torch.allclose(out[start : start + nq], want, atol=1e-5)
        start += nq
