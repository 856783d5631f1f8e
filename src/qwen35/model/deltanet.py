"""Gated DeltaNet (linear attention) layer: causal conv1d + gated delta rule, chunked and recurrent paths.

Torch, with compiled CPU kernels for the two decode steps (conv window, recurrent update), each with a
torch twin. Owns the layer's math and how it reads/writes its per-sequence state slot (conv window + fp32
recurrent state) in `ModelCache`. Invariant: running a sequence as one prefill, as several chunks, or token by token
(recurrent) yields the same outputs and final state up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qwen35.model.batch import ForwardBatch, ModelCache
from qwen35.model.config import TextConfig
from qwen35.model.kernels.build import library
from qwen35.model.layers import GatedRMSNorm, Linear


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + eps)


def unit_lower_inverse(lower: torch.Tensor) -> torch.Tensor:
    """(I + L)^-1 for strictly lower-triangular L [..., C, C], by doubling: sum_j (-L)^j = (I - L)(I + L^2)(I + L^4)...
    (L is nilpotent). Ten batched C x C matmuls for C = 64, where batched `solve_triangular` on CPU took ~250 ms per
    GDN layer of a 512-token prefill (it solves matrix by matrix)."""
    size = lower.shape[-1]
    eye = torch.eye(size, dtype=lower.dtype, device=lower.device)
    result = eye - lower
    power = -lower
    degree = 1  # result holds every power of -L up to this degree
    while degree < size - 1:
        power = power @ power
        result = result + result @ power
        degree = 2 * degree + 1
    return result


def chunk_gated_delta_rule(
    query: torch.Tensor,  # [H, T, Dk] fp32, l2-normalised and scaled
    key: torch.Tensor,  # [H, T, Dk] fp32, l2-normalised
    value: torch.Tensor,  # [H, T, Dv] fp32
    decay: torch.Tensor,  # [H, T] log-space decay (<= 0)
    beta: torch.Tensor,  # [H, T]
    state: torch.Tensor,  # [H, Dk, Dv] fp32 initial state
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked (WY / UT-transform) form of the gated delta rule for one sequence. Returns (out [H,T,Dv], state)."""
    num_heads, seq_len, _ = key.shape
    pad = (chunk_size - seq_len % chunk_size) % chunk_size
    if pad:
        query, key, value = (F.pad(x, (0, 0, 0, pad)) for x in (query, key, value))
        decay, beta = (F.pad(x, (0, pad)) for x in (decay, beta))
    num_chunks = (seq_len + pad) // chunk_size
    v_beta = value * beta.unsqueeze(-1)
    k_beta = key * beta.unsqueeze(-1)
    query, key, k_beta, v_beta = (x.reshape(num_heads, num_chunks, chunk_size, x.shape[-1]) for x in (query, key, k_beta, v_beta))
    decay = decay.reshape(num_heads, num_chunks, chunk_size)
    upper = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=query.device).triu(1)
    cum_decay = decay.cumsum(dim=-1)  # [H, N, C]
    pairwise = (cum_decay.unsqueeze(-1) - cum_decay.unsqueeze(-2)).masked_fill(upper, float("-inf")).exp()
    ut_system = (k_beta @ key.transpose(-1, -2)) * pairwise
    intra = (query @ key.transpose(-1, -2)) * pairwise
    decayed_k_beta = k_beta * cum_decay.exp().unsqueeze(-1)
    inverse = unit_lower_inverse(ut_system.tril(-1))
    new_values = inverse @ v_beta
    k_cumdecay = inverse @ decayed_k_beta
    query = query * cum_decay.exp().unsqueeze(-1)
    key = key * (cum_decay[..., -1:] - cum_decay).exp().unsqueeze(-1)
    chunk_decay = cum_decay[..., -1].exp()[..., None, None]  # [H, N, 1, 1]
    out = torch.empty_like(new_values)
    for i in range(num_chunks):
        v_new = new_values[:, i] - k_cumdecay[:, i] @ state
        out[:, i] = query[:, i] @ state + intra[:, i] @ v_new
        state = state * chunk_decay[:, i] + key[:, i].transpose(-1, -2) @ v_new
    return out.reshape(num_heads, -1, out.shape[-1])[:, :seq_len], state


def recurrent_gated_delta_rule_(
    query: torch.Tensor,  # [H, Dk] fp32, l2-normalised and scaled
    key: torch.Tensor,  # [H, Dk]
    value: torch.Tensor,  # [H, Dv]
    decay: torch.Tensor,  # [H]
    beta: torch.Tensor,  # [H]
    state: torch.Tensor,  # [H, Dk, Dv] fp32, updated in place (a view of the sequence's slot)
) -> torch.Tensor:
    """One token of one sequence, updating its state in place (no gather/scatter of the 2 MB-per-layer states).
    Returns out [H, Dv]."""
    state.mul_(decay.exp()[:, None, None])
    kv_mem = torch.bmm(key.unsqueeze(1), state).squeeze(1)  # [H, Dv]
    delta = (value - kv_mem) * beta.unsqueeze(-1)
    state.baddbmm_(key.unsqueeze(2), delta.unsqueeze(1))  # state += k^T delta
    return torch.bmm(query.unsqueeze(1), state).squeeze(1)


def recurrent_gated_delta_rule_batched_(
    query: torch.Tensor,  # [B, H, Dk] fp32
    key: torch.Tensor,  # [B, H, Dk]
    value: torch.Tensor,  # [B, H, Dv]
    decay: torch.Tensor,  # [B, H]
    beta: torch.Tensor,  # [B, H]
    states: torch.Tensor,  # [num_slots, H, Dk, Dv] fp32: every slot's state; slots[b] updated in place
    slots: list[int],
    use_kernel: bool = True,
) -> torch.Tensor:
    """One decode token for B sequences at once (the compiled kernel: one read and one write of each state, no
    Python loop); the twin loops `recurrent_gated_delta_rule_` over the sequences. Returns out [B, H, Dv]."""
    lib = library() if use_kernel else None
    dv = value.shape[-1]
    if (lib is not None and states.device.type == "cpu" and states.dtype == torch.float32 and states.is_contiguous()
            and dv % 8 == 0 and dv <= 512):
        q, k, v = (t.float().contiguous() for t in (query, key, value))
        g, b = decay.float().contiguous(), beta.float().contiguous()
        slot_t = torch.tensor(slots, dtype=torch.int64)
        out = torch.empty_like(v)
        lib.qwen35_gdn_recurrent(states.data_ptr(), slot_t.data_ptr(), q.shape[0], q.shape[1], q.shape[2], dv,
                                 q.data_ptr(), k.data_ptr(), v.data_ptr(), g.data_ptr(), b.data_ptr(), out.data_ptr())
        return out
    return torch.stack([
        recurrent_gated_delta_rule_(query[i], key[i], value[i], decay[i], beta[i], states[slot])
        for i, slot in enumerate(slots)
    ])


def conv_step_(
    x: torch.Tensor,  # [B, C]: this token's conv input of each sequence
    weight: torch.Tensor,  # [C, K]
    conv_state: torch.Tensor,  # [num_slots, C, K-1]: every slot's window; slots[b] updated in place
    slots: torch.Tensor,  # [B] int64
    use_kernel: bool = True,
) -> torch.Tensor:
    """One decode token of the causal depthwise conv for B sequences: silu of the window (state, x) times the
    weight, the state shifted by one. The compiled kernel does it in one pass over the slots; the twin gathers,
    concatenates and scatters. Returns float32 [B, C] (the twin: the weight's dtype)."""
    lib = library() if use_kernel else None
    if (lib is not None and conv_state.device.type == "cpu" and conv_state.dtype == torch.float32
            and weight.dtype == torch.float32 and conv_state.is_contiguous()):
        xs = x.float().contiguous()
        w = weight.contiguous()
        index = slots.to(torch.int64).contiguous()
        out = torch.empty_like(xs)
        lib.qwen35_conv_step(conv_state.data_ptr(), index.data_ptr(), xs.shape[0], xs.shape[1], conv_state.shape[2],
                             xs.data_ptr(), w.data_ptr(), out.data_ptr())
        return out
    window = torch.cat([conv_state[slots], x.unsqueeze(-1).to(conv_state.dtype)], dim=-1)  # [B, C, K]
    conv_state.index_copy_(0, slots, window[..., 1:])
    return F.silu((window.to(weight.dtype) * weight).sum(-1))


class GatedDeltaNet(nn.Module):
    def __init__(self, config: TextConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_k_heads = config.linear_num_key_heads
        self.num_v_heads = config.linear_num_value_heads
        self.head_k_dim = config.linear_key_head_dim
        self.head_v_dim = config.linear_value_head_dim
        self.key_dim = self.num_k_heads * self.head_k_dim
        self.value_dim = self.num_v_heads * self.head_v_dim
        self.conv_kernel = config.linear_conv_kernel_dim
        self.conv_dim = 2 * self.key_dim + self.value_dim
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, self.conv_kernel, groups=self.conv_dim, bias=False,
                                padding=self.conv_kernel - 1)
        self.dt_bias = nn.Parameter(torch.ones(self.num_v_heads))
        self.A_log = nn.Parameter(torch.zeros(self.num_v_heads))
        self.norm = GatedRMSNorm(self.head_v_dim, config.rms_norm_eps)
        self.out_proj: nn.Module = Linear(self.value_dim, config.hidden_size, bias=False)
        self.in_proj_qkv = Linear(config.hidden_size, self.conv_dim, bias=False)
        self.in_proj_z = Linear(config.hidden_size, self.value_dim, bias=False)
        self.in_proj_b = Linear(config.hidden_size, self.num_v_heads, bias=False)
        self.in_proj_a = Linear(config.hidden_size, self.num_v_heads, bias=False)
        self.in_proj: nn.Module | None = None  # quantised: qkv|z|b|a fused (`model.quantized`), the four removed

    def _qkv(self, mixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # mixed: [..., conv_dim] after conv -> q, k [..., Hv, Dk] (heads repeated for grouped values), v [..., Hv, Dv]
        q, k, v = torch.split(mixed.float(), [self.key_dim, self.key_dim, self.value_dim], dim=-1)
        lead = mixed.shape[:-1]
        q = q.reshape(*lead, self.num_k_heads, self.head_k_dim)
        k = k.reshape(*lead, self.num_k_heads, self.head_k_dim)
        v = v.reshape(*lead, self.num_v_heads, self.head_v_dim)
        if self.num_v_heads != self.num_k_heads:
            repeat = self.num_v_heads // self.num_k_heads
            q = q.repeat_interleave(repeat, dim=-2)
            k = k.repeat_interleave(repeat, dim=-2)
        q = l2norm(q) * (self.head_k_dim**-0.5)
        k = l2norm(k)
        return q, k, v

    def _gates(self, b: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """beta = sigmoid(b), log-space decay = -exp(A_log) * softplus(a + dt_bias), both float32 [..., Hv]."""
        return b.float().sigmoid(), -self.A_log.float().exp() * F.softplus(a.float() + self.dt_bias.float())

    def decode_step_(
        self,
        mixed: torch.Tensor,  # [B, conv_dim]: the in-projection rows of B decoding sequences
        z: torch.Tensor,  # [B, value_dim]
        b: torch.Tensor,  # [B, Hv]
        a: torch.Tensor,  # [B, Hv]
        conv_state: torch.Tensor,  # [S, conv_dim, K-1]
        rec_state: torch.Tensor,  # [S, Hv, Dk, Dv]
        slots: list[int],
        use_kernel: bool = True,
    ) -> torch.Tensor:
        """One decode token of B sequences from the in-projection to the gated norm (the input of out_proj),
        states updated in place. A float32 layer takes one compiled call (`qwen35_gdn_decode`: conv step, q/k
        l2norm, gates, delta rule, gated RMSNorm); the twin composes the torch ops and the per-step kernels.
        Returns [B, value_dim] in the input dtype."""
        lib = library() if use_kernel else None
        params = (self.conv1d.weight, self.A_log, self.dt_bias, self.norm.weight)
        if (lib is not None and mixed.device.type == "cpu" and self.head_v_dim % 8 == 0
                and max(self.head_k_dim, self.head_v_dim) <= 512
                and all(t.dtype == torch.float32 for t in (mixed, z, b, a, conv_state, rec_state, *params))
                and conv_state.is_contiguous() and rec_state.is_contiguous()
                and all(t.stride(-1) == 1 for t in (mixed, z, b, a)) and b.stride(0) == a.stride(0)):
            weight = self.conv1d.weight.squeeze(1).contiguous()
            slot_t = torch.tensor(slots, dtype=torch.int64)
            out = torch.empty(mixed.shape[0], self.value_dim, dtype=torch.float32)
            lib.qwen35_gdn_decode(
                mixed.data_ptr(), mixed.stride(0), z.data_ptr(), z.stride(0), b.data_ptr(), a.data_ptr(), b.stride(0),
                mixed.shape[0], self.num_k_heads, self.num_v_heads, self.head_k_dim, self.head_v_dim,
                conv_state.data_ptr(), weight.data_ptr(), conv_state.shape[2], rec_state.data_ptr(), slot_t.data_ptr(),
                self.A_log.data_ptr(), self.dt_bias.data_ptr(), self.norm.weight.data_ptr(), self.norm.eps,
                out.data_ptr(), out.stride(0))
            return out
        beta, decay = self._gates(b, a)
        weight = self.conv1d.weight.squeeze(1)  # [C, K]
        slot_t = torch.tensor(slots, device=mixed.device)
        conv_out = conv_step_(mixed, weight, conv_state, slot_t, use_kernel=use_kernel)  # [B, C]
        q, k, v = self._qkv(conv_out)
        core = recurrent_gated_delta_rule_batched_(q, k, v, decay, beta, rec_state, slots, use_kernel=use_kernel)
        normed = self.norm(core.to(mixed.dtype).reshape(-1, self.head_v_dim), z.reshape(-1, self.head_v_dim))
        return normed.reshape(mixed.shape[0], self.value_dim)

    def forward(self, x: torch.Tensor, batch: ForwardBatch, cache: ModelCache) -> torch.Tensor:
        # x: [T, hidden]
        conv_state = cache.conv[self.layer_idx]  # [S, C, K-1]
        rec_state = cache.recurrent[self.layer_idx]  # [S, Hv, Dk, Dv]
        if self.in_proj is not None:
            mixed, z, b, a = self.in_proj.split(x)
        else:
            mixed, z, b, a = self.in_proj_qkv(x), self.in_proj_z(x), self.in_proj_b(x), self.in_proj_a(x)  # [T, C] ...
        starts = batch.query_starts
        decode = [i for i, n in enumerate(batch.query_lens) if n == 1]
        if len(decode) == x.shape[0]:  # decode only (the usual step): every row, in order
            normed = self.decode_step_(mixed, z, b, a, conv_state, rec_state, [batch.state_slots[i] for i in decode])
            return self.out_proj(normed.to(x.dtype))
        normed = torch.empty(x.shape[0], self.value_dim, dtype=x.dtype, device=x.device)
        if decode:
            rows = torch.tensor([starts[i] for i in decode], device=x.device)
            normed[rows] = self.decode_step_(mixed[rows], z[rows], b[rows], a[rows], conv_state, rec_state,
                                             [batch.state_slots[i] for i in decode]).to(x.dtype)
        weight = self.conv1d.weight.squeeze(1)  # [C, K]
        for i, n in enumerate(batch.query_lens):
            if n == 1:
                continue
            s, e, slot = starts[i], starts[i] + n, batch.state_slots[i]
            beta, decay = self._gates(b[s:e], a[s:e])
            seq = mixed[s:e].transpose(0, 1)  # [C, n]
            full = torch.cat([conv_state[slot], seq.to(conv_state.dtype)], dim=-1)  # [C, K-1+n]
            conv_state[slot].copy_(full[:, -(self.conv_kernel - 1):])
            conv_out = F.silu(F.conv1d(full.to(weight.dtype).unsqueeze(0), weight.unsqueeze(1), groups=self.conv_dim))
            q, k, v = self._qkv(conv_out[0].transpose(0, 1))  # [n, Hv, D]
            out, new_state = chunk_gated_delta_rule(
                q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                decay.transpose(0, 1), beta.transpose(0, 1), rec_state[slot].float(),
            )
            rec_state[slot].copy_(new_state)
            core = out.transpose(0, 1).to(x.dtype).reshape(-1, self.head_v_dim)  # [n * Hv, Dv]
            normed[s:e] = self.norm(core, z[s:e].reshape(-1, self.head_v_dim)).reshape(n, self.value_dim)
        return self.out_proj(normed)
