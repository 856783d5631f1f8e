"""The Qwen3.5 vision tower: pixel patches of images and video frames in, text-sized embeddings out.

Pure torch, parameter names as the official checkpoint's `model.visual.*` (so loading is a prefix strip). The
pieces, as transformers 5.23 `Qwen3_5VisionModel` computes them: a 3-D patch embedding (temporal 2 x 16 x 16,
a Conv3d whose stride equals its kernel, i.e. one matmul per patch), learned position embeddings resampled
bilinearly (align_corners) to each grid, 2-D axial rotary embeddings, `depth` pre-norm blocks whose attention is
bidirectional within one frame (one temporal group) and never across, and a 2x2 spatial merger to the text
hidden size. Patches arrive in merge-block order (the processors' layout), so each run of
`spatial_merge_size ** 2` rows is one merged token.
Invariant: frames are independent (attention, positions and merging never cross a temporal group), so encoding
a video's frames one by one or all at once gives the same rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qwen35.model.config import VisionConfig


def _act(name: str) -> nn.Module:
    if name in ("gelu_pytorch_tanh", "gelu_tanh"):
        return nn.GELU(approximate="tanh")
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"unsupported vision activation {name!r}")


class PatchEmbed(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        kernel = (config.temporal_patch_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(config.in_channels, config.hidden_size, kernel_size=kernel, stride=kernel, bias=True)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        # patches: [N, patch_dim] -> [N, hidden]; a stride == kernel conv is a matmul on the flattened patch
        weight = self.proj.weight.reshape(self.proj.weight.shape[0], -1)
        return F.linear(patches.to(weight.dtype), weight, self.proj.bias)


class VisionMLP(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.linear_fc1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=True)
        self.linear_fc2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=True)
        self.act = _act(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(self.act(self.linear_fc1(x)))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class VisionAttention(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=True)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size, bias=True)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, frame_lens: list[int]) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self.qkv(x).reshape(n, 3, self.num_heads, self.head_dim).unbind(1)  # each [N, heads, hd]
        cos_, sin_ = cos.unsqueeze(1), sin.unsqueeze(1)
        qf, kf = q.float(), k.float()
        q = (qf * cos_ + _rotate_half(qf) * sin_).to(x.dtype)
        k = (kf * cos_ + _rotate_half(kf) * sin_).to(x.dtype)
        out = torch.empty_like(q)
        start = 0
        for length, count in _runs(frame_lens):
            # `count` consecutive frames of `length` patches: one batched attention, no mask needed
            end = start + length * count
            shape = (count, length, self.num_heads, self.head_dim)
            qs, ks, vs = (t[start:end].reshape(shape).transpose(1, 2) for t in (q, k, v))
            attn = F.scaled_dot_product_attention(qs, ks, vs)  # [count, heads, length, hd]
            out[start:end] = attn.transpose(1, 2).reshape(end - start, self.num_heads, self.head_dim)
            start = end
        return self.proj(out.reshape(n, -1))


def _runs(lengths: list[int]) -> list[tuple[int, int]]:
    """Consecutive equal lengths as (length, count)."""
    runs: list[tuple[int, int]] = []
    for length in lengths:
        if runs and runs[-1][0] == length:
            runs[-1] = (length, runs[-1][1] + 1)
        else:
            runs.append((length, 1))
    return runs


class VisionBlock(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=1e-6)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=1e-6)
        self.attn = VisionAttention(config)
        self.mlp = VisionMLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, frame_lens: list[int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, frame_lens)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    """LayerNorm per patch, then each 2x2 block of patches (consecutive rows) to one text-sized token."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.merged_size = config.hidden_size * config.spatial_merge_size**2
        self.norm = nn.LayerNorm(config.hidden_size, eps=1e-6)
        self.linear_fc1 = nn.Linear(self.merged_size, self.merged_size)
        self.act_fn = nn.GELU()
        self.linear_fc2 = nn.Linear(self.merged_size, config.out_hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x).reshape(-1, self.merged_size)
        return self.linear_fc2(self.act_fn(self.linear_fc1(x)))


class VisionModel(nn.Module):
    """`model.visual` of the official checkpoint."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        self.pos_embed = nn.Embedding(config.num_position_embeddings, config.hidden_size)
        self.num_grid_per_side = int(config.num_position_embeddings**0.5)
        self.blocks = nn.ModuleList([VisionBlock(config) for _ in range(config.depth)])
        self.merger = PatchMerger(config)
        spatial = config.head_dim // 2
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, spatial, 2, dtype=torch.float) / spatial))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def reset_buffers(self, device: torch.device | str) -> None:
        """Recompute the rotary inverse frequencies (after a meta-device build)."""
        spatial = self.config.head_dim // 2
        self.inv_freq = 1.0 / (
            self.config.rope_theta ** (torch.arange(0, spatial, 2, dtype=torch.float, device=device) / spatial)
        )

    @torch.inference_mode()
    def forward(self, patches: torch.Tensor, grids: list[tuple[int, int, int]]) -> torch.Tensor:
        """patches [sum(t*h*w), patch_dim] for the given (t, h, w) patch grids -> [sum(t*h*w) / merge^2, out]."""
        device = patches.device
        merge = self.config.spatial_merge_size
        rows_h, rows_w = _merge_order_coords(grids, merge, device)  # [N] patch row / column of each input row
        x = self.patch_embed(patches)
        x = x + self._position_embeddings(rows_h, rows_w, grids).to(x.dtype)
        freqs_h = rows_h[:, None].float() * self.inv_freq
        freqs_w = rows_w[:, None].float() * self.inv_freq
        freqs = torch.cat((freqs_h, freqs_w), dim=-1)
        emb = torch.cat((freqs, freqs), dim=-1)  # [N, head_dim]
        cos, sin = emb.cos(), emb.sin()
        frame_lens = [h * w for t, h, w in grids for _ in range(t)]
        for block in self.blocks:
            x = block(x, cos, sin, frame_lens)
        return self.merger(x)

    def _position_embeddings(self, rows: torch.Tensor, cols: torch.Tensor,
                             grids: list[tuple[int, int, int]]) -> torch.Tensor:
        """The learned square table resampled to each grid: bilinear, align_corners=True (4 taps per patch)."""
        device = rows.device
        side = self.num_grid_per_side
        heights = torch.cat([torch.full((t * h * w,), h, device=device) for t, h, w in grids])
        widths = torch.cat([torch.full((t * h * w,), w, device=device) for t, h, w in grids])
        h_taps, h_weights = _axis_taps(rows, heights, side)
        w_taps, w_weights = _axis_taps(cols, widths, side)
        index = (h_taps[:, :, None] * side + w_taps[:, None, :]).reshape(-1, 4)
        weight = (h_weights[:, :, None] * w_weights[:, None, :]).reshape(-1, 4)
        return (self.pos_embed(index) * weight[:, :, None].to(self.pos_embed.weight.dtype)).sum(1)


def _axis_taps(index: torch.Tensor, size: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two linear-interpolation taps into a `side`-long table for positions `index` on an axis of `size`."""
    src = index.float() * (side - 1) / torch.clamp(size - 1, min=1).float()
    floor = torch.floor(src)
    offsets = torch.arange(0, 2, device=index.device)
    taps = (floor.long()[:, None] + offsets).clamp(0, side - 1)
    weights = (1 - (src[:, None] - floor[:, None] - offsets).abs()).clamp(min=0)
    return taps, weights


def _merge_order_coords(grids: list[tuple[int, int, int]], merge: int,
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of every patch, in merge-block order (block row, block col, in-row, in-col), per frame."""
    rows: list[torch.Tensor] = []
    cols: list[torch.Tensor] = []
    for t, h, w in grids:
        hh, ww = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        shape = (h // merge, merge, w // merge, merge)
        rows.append(hh.reshape(shape).transpose(1, 2).flatten().repeat(t))
        cols.append(ww.reshape(shape).transpose(1, 2).flatten().repeat(t))
    return torch.cat(rows), torch.cat(cols)
