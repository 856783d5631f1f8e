"""Forward-pass inputs for a flat, ragged batch, and the cache tensors the model reads and writes.

Owns `ForwardBatch` (what one model step computes: several sequences' new tokens concatenated) and
`ModelCache` (paged KV blocks for attention layers, one state slot per sequence for Gated DeltaNet layers).
Imports torch and the config only. Invariant: sequence i owns tokens [query_starts[i], query_starts[i+1]) of the
flat batch, its KV lives in the blocks of block_tables[i], and its GDN state in slot state_slots[i].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qwen35.model.config import TextConfig


@dataclass
class ForwardBatch:
    input_ids: torch.Tensor  # [T] long
    positions: torch.Tensor  # [3, T] long: temporal / height / width streams
    query_lens: list[int]  # new tokens per sequence, sum == T
    context_lens: list[int]  # tokens in the cache per sequence after this step (computed + new)
    block_tables: list[list[int]]  # KV block ids per sequence, covering context_lens
    state_slots: list[int]  # GDN state slot per sequence
    slot_mapping: torch.Tensor  # [T] long: flat KV position (block * block_size + offset) of each new token
    input_embeds: torch.Tensor | None = None  # [T, hidden]: overrides embeddings (vision placeholders)

    @property
    def num_sequences(self) -> int:
        return len(self.query_lens)

    @property
    def query_starts(self) -> list[int]:
        starts = [0]
        for n in self.query_lens:
            starts.append(starts[-1] + n)
        return starts


class ModelCache:
    """Cache tensors for every layer, allocated once.

    Attention layer l: key/value [num_blocks, block_size, num_kv_heads, head_dim] in `kv_dtype` (default: dtype).
    GDN layer l: conv [num_slots, conv_dim, kernel - 1], recurrent [num_slots, v_heads, k_dim, v_dim] (fp32).
    """

    def __init__(
        self,
        config: TextConfig,
        num_blocks: int,
        block_size: int,
        num_state_slots: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        state_dtype: torch.dtype = torch.float32,
        num_checkpoints: int = 0,
        kv_dtype: torch.dtype | None = None,
    ) -> None:
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.num_state_slots = num_state_slots
        kv_shape = (num_blocks, block_size, config.num_key_value_heads, config.head_dim)
        self.key: dict[int, torch.Tensor] = {}
        self.value: dict[int, torch.Tensor] = {}
        for layer in config.attention_layer_ids:
            self.key[layer] = torch.zeros(kv_shape, dtype=kv_dtype or dtype, device=device)
            self.value[layer] = torch.zeros(kv_shape, dtype=kv_dtype or dtype, device=device)
        conv_shape = (num_state_slots, config.gdn_conv_dim, config.linear_conv_kernel_dim - 1)
        rec_shape = (
            num_state_slots,
            config.linear_num_value_heads,
            config.linear_key_head_dim,
            config.linear_value_head_dim,
        )
        self.conv: dict[int, torch.Tensor] = {}
        self.recurrent: dict[int, torch.Tensor] = {}
        # Prefix-cache checkpoints: copies of a slot's GDN state at a block boundary.
        self.conv_checkpoints: dict[int, torch.Tensor] = {}
        self.recurrent_checkpoints: dict[int, torch.Tensor] = {}
        for layer in config.deltanet_layer_ids:
            self.conv[layer] = torch.zeros(conv_shape, dtype=dtype, device=device)
            self.recurrent[layer] = torch.zeros(rec_shape, dtype=state_dtype, device=device)
            if num_checkpoints:
                self.conv_checkpoints[layer] = torch.zeros((num_checkpoints, *conv_shape[1:]), dtype=dtype,
                                                           device=device)
                self.recurrent_checkpoints[layer] = torch.zeros((num_checkpoints, *rec_shape[1:]),
                                                                dtype=state_dtype, device=device)

    def reset_slots(self, slots: list[int]) -> None:
        """Zero GDN state for sequences that start from scratch."""
        if not slots:
            return
        index = torch.tensor(slots, dtype=torch.long, device=next(iter(self.recurrent.values())).device) \
            if self.recurrent else None
        if index is None:
            return
        for layer in self.conv:
            self.conv[layer].index_fill_(0, index, 0)
            self.recurrent[layer].index_fill_(0, index, 0)

    def copy_slot(self, src: int, dst: int) -> None:
        """Fork a sequence's GDN state (n > 1 samples sharing one prompt)."""
        for layer in self.conv:
            self.conv[layer][dst].copy_(self.conv[layer][src])
            self.recurrent[layer][dst].copy_(self.recurrent[layer][src])

    def save_checkpoint(self, slot: int, checkpoint: int) -> None:
        for layer in self.conv_checkpoints:
            self.conv_checkpoints[layer][checkpoint].copy_(self.conv[layer][slot])
            self.recurrent_checkpoints[layer][checkpoint].copy_(self.recurrent[layer][slot])

    def load_checkpoint(self, checkpoint: int, slot: int) -> None:
        for layer in self.conv_checkpoints:
            self.conv[layer][slot].copy_(self.conv_checkpoints[layer][checkpoint])
            self.recurrent[layer][slot].copy_(self.recurrent_checkpoints[layer][checkpoint])

    def copy_block(self, src: int, dst: int) -> None:
        """Copy-on-write of a partially filled KV block shared by forked sequences."""
        for layer in self.key:
            self.key[layer][dst].copy_(self.key[layer][src])
            self.value[layer][dst].copy_(self.value[layer][src])

    @staticmethod
    def bytes_per_block(config: TextConfig, block_size: int, dtype: torch.dtype) -> int:
        itemsize = torch.empty((), dtype=dtype).element_size()
        return 2 * len(config.attention_layer_ids) * block_size * config.num_key_value_heads * config.head_dim * itemsize

    @staticmethod
    def bytes_per_slot(config: TextConfig, dtype: torch.dtype, state_dtype: torch.dtype = torch.float32) -> int:
        itemsize = torch.empty((), dtype=dtype).element_size()
        state_itemsize = torch.empty((), dtype=state_dtype).element_size()
        conv = config.gdn_conv_dim * (config.linear_conv_kernel_dim - 1) * itemsize
        rec = (
            config.linear_num_value_heads * config.linear_key_head_dim * config.linear_value_head_dim * state_itemsize
        )
        return len(config.deltanet_layer_ids) * (conv + rec)
