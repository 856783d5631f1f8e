"""Gated full attention over a paged KV cache.

Torch, and the compiled decode attention (`qwen35_paged_attn_decode`: float32 queries over a float32 or bfloat16
CPU cache, read in place; the torch path is its twin). Owns q/k norm, partial interleaved MRoPE, the sigmoid output
gate, writing new keys/values into KV blocks and attending over each sequence's blocks. Invariant: attention over
the paged cache equals dense causal attention over the sequence's whole history (tested against a dense reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qwen35.model.batch import ForwardBatch, ModelCache
from qwen35.model.config import TextConfig
from qwen35.model.kernels.build import library
from qwen35.model.layers import Linear, RMSNorm, apply_rotary

# Decode rows are batched into one padded SDPA only up to this context: padding every row to the longest would
# gather max_num_seqs x the longest context per layer (GBs at 256K); longer rows take the per-sequence path.
BATCHED_DECODE_MAX_CONTEXT = 8192


def paged_attention(
    query: torch.Tensor,  # [T, Hq, D] (rotated)
    key_cache: torch.Tensor,  # [num_blocks, block_size, Hkv, D]
    value_cache: torch.Tensor,
    batch: ForwardBatch,
    scale: float,
    use_kernel: bool = True,
) -> torch.Tensor:
    """Causal attention of each sequence's new queries over its cached keys. Returns [T, Hq, D].
    `use_kernel=False` forces the torch path (the compiled decode attention's twin)."""
    block_size = key_cache.shape[1]
    num_heads, head_dim = query.shape[1], query.shape[2]
    num_kv_heads = key_cache.shape[2]
    out = torch.empty_like(query)
    starts = batch.query_starts
    lib = library() if use_kernel and _kernel_fits(query, key_cache, value_cache) else None
    decode = [i for i, n in enumerate(batch.query_lens)
              if n == 1 and (lib is not None or batch.context_lens[i] <= BATCHED_DECODE_MAX_CONTEXT)]
    if decode and lib is not None:  # every decode row, any context: the cache read in place
        ctx = [batch.context_lens[i] for i in decode]
        max_blocks = max((c + block_size - 1) // block_size for c in ctx)
        table = torch.tensor([_padded(batch.block_tables[i][: (c + block_size - 1) // block_size], max_blocks)
                              for i, c in zip(decode, ctx)], dtype=torch.long)
        lengths = torch.tensor(ctx, dtype=torch.long)
        rows = torch.tensor([starts[i] for i in decode])
        q = query[rows].contiguous()
        o = torch.empty_like(q)
        lib.qwen35_paged_attn_decode(q.data_ptr(), key_cache.data_ptr(), value_cache.data_ptr(),
                                     int(key_cache.dtype == torch.bfloat16), table.data_ptr(), max_blocks,
                                     lengths.data_ptr(), len(decode), num_heads, num_kv_heads, head_dim, block_size,
                                     scale, o.data_ptr())
        out[rows] = o
        done = set(decode)
    # Batched decode: one query per sequence, keys padded to the longest context and masked.
    elif len(decode) > 1:
        ctx = [batch.context_lens[i] for i in decode]
        max_blocks = max((c + block_size - 1) // block_size for c in ctx)
        table = torch.zeros(len(decode), max_blocks, dtype=torch.long, device=query.device)
        for row, i in enumerate(decode):
            blocks = batch.block_tables[i][: (ctx[row] + block_size - 1) // block_size]
            table[row, : len(blocks)] = torch.tensor(blocks, dtype=torch.long)
        keys = key_cache[table].reshape(len(decode), max_blocks * block_size, num_kv_heads, head_dim).to(query.dtype)
        values = value_cache[table].reshape(len(decode), max_blocks * block_size, num_kv_heads, head_dim).to(query.dtype)
        lengths = torch.tensor(ctx, device=query.device)
        mask = torch.arange(max_blocks * block_size, device=query.device)[None, :] < lengths[:, None]  # [B, L]
        rows = torch.tensor([starts[i] for i in decode], device=query.device)
        q = query[rows].unsqueeze(2)  # [B, Hq, 1, D]
        o = F.scaled_dot_product_attention(
            q, keys.transpose(1, 2), values.transpose(1, 2), attn_mask=mask[:, None, None, :], scale=scale,
            enable_gqa=num_heads != num_kv_heads,
        )
        out[rows] = o.squeeze(2)
        done = set(decode)
    else:
        done = set()
    for i, n in enumerate(batch.query_lens):
        if i in done:
            continue
        s, ctx_len = starts[i], batch.context_lens[i]
        num_blocks = (ctx_len + block_size - 1) // block_size
        blocks = torch.tensor(batch.block_tables[i][:num_blocks], dtype=torch.long, device=query.device)
        keys = key_cache[blocks].reshape(-1, num_kv_heads, head_dim)[:ctx_len].to(query.dtype)  # a bf16 cache: upcast
        values = value_cache[blocks].reshape(-1, num_kv_heads, head_dim)[:ctx_len].to(query.dtype)
        q = query[s : s + n].transpose(0, 1).unsqueeze(0)  # [1, Hq, n, D]
        k = keys.transpose(0, 1).unsqueeze(0)
        v = values.transpose(0, 1).unsqueeze(0)
        past = ctx_len - n
        mask = None
        if n > 1 and past > 0:  # a chunk after cached history: causal with an offset
            q_pos = torch.arange(past, ctx_len, device=query.device)
            mask = torch.arange(ctx_len, device=query.device)[None, :] <= q_pos[:, None]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=n > 1 and past == 0, scale=scale,
                                           enable_gqa=num_heads != num_kv_heads)
        out[s : s + n] = o[0].transpose(0, 1)
    return out


def _kernel_fits(query: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor) -> bool:
    """The compiled decode attention's domain: float32 queries on CPU over a float32 or bfloat16 cache (contiguous),
    head_dim % 16, <= 64 query heads a group, <= 1024 in all."""
    head_dim, heads, kv_heads = query.shape[2], query.shape[1], key_cache.shape[2]
    return (query.device.type == "cpu" and query.dtype == torch.float32
            and key_cache.dtype == value_cache.dtype and key_cache.dtype in (torch.float32, torch.bfloat16)
            and key_cache.is_contiguous() and value_cache.is_contiguous() and head_dim % 16 == 0
            and heads % kv_heads == 0 and heads // kv_heads <= 64 and heads <= 1024)


def _padded(blocks: list[int], width: int) -> list[int]:
    return [*blocks, *([0] * (width - len(blocks)))]


class GatedAttention(nn.Module):
    def __init__(self, config: TextConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.scale = self.head_dim**-0.5
        bias = config.attention_bias
        self.q_proj = Linear(config.hidden_size, self.num_heads * self.head_dim * 2, bias=bias)
        self.k_proj = Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj: nn.Module = Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)
        self.qkv: nn.Module | None = None  # quantised: q|k|v fused (`model.quantized`), the three above removed
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, batch: ForwardBatch, cache: ModelCache
    ) -> torch.Tensor:
        num_tokens = x.shape[0]
        if self.qkv is not None:
            q_all, k_all, v_all = self.qkv.split(x)
        else:
            q_all, k_all, v_all = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        # q_proj packs [query | gate] per head.
        q, gate = torch.chunk(q_all.reshape(num_tokens, self.num_heads, 2 * self.head_dim), 2, dim=-1)
        gate = gate.reshape(num_tokens, -1)
        q = apply_rotary(self.q_norm(q), cos, sin)
        k = apply_rotary(self.k_norm(k_all.reshape(num_tokens, self.num_kv_heads, self.head_dim)), cos, sin)
        v = v_all.reshape(num_tokens, self.num_kv_heads, self.head_dim)
        key_cache, value_cache = cache.key[self.layer_idx], cache.value[self.layer_idx]
        flat_k = key_cache.view(-1, self.num_kv_heads, self.head_dim)
        flat_v = value_cache.view(-1, self.num_kv_heads, self.head_dim)
        flat_k.index_copy_(0, batch.slot_mapping, k.to(flat_k.dtype))
        flat_v.index_copy_(0, batch.slot_mapping, v.to(flat_v.dtype))
        attn = paged_attention(q, key_cache, value_cache, batch, self.scale)
        attn = attn.reshape(num_tokens, -1) * torch.sigmoid(gate)
        return self.o_proj(attn)
