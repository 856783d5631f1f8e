"""Cache bookkeeping: ref-counted KV blocks for attention layers and GDN state slots. No torch.

Owns which block ids and slot ids are free. The tensors themselves live in the model's `ModelCache`; this module
only hands out ids. Also defines the prefix-cache hook (`PrefixCache`), implemented by the prefix-caching issue.
Invariant: every id is either free or owned (ref count > 0); `num_free_blocks + owned == num_blocks` always.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class BlockPool:
    """Ref-counted KV block ids; forked sequences share full blocks."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        self._refs = [0] * num_blocks

    @property
    def num_free(self) -> int:
        return len(self._free)

    def blocks_needed(self, num_tokens: int, num_have: int) -> int:
        return max(0, -(-num_tokens // self.block_size) - num_have)

    def allocate(self, count: int) -> list[int]:
        if count > len(self._free):
            raise MemoryError(f"need {count} KV blocks, {len(self._free)} free")
        blocks = [self._free.pop() for _ in range(count)]
        for b in blocks:
            self._refs[b] = 1
        return blocks

    def share(self, blocks: list[int]) -> None:
        for b in blocks:
            self._refs[b] += 1

    def release(self, blocks: list[int]) -> None:
        for b in blocks:
            self._refs[b] -= 1
            if self._refs[b] == 0:
                self._free.append(b)
            elif self._refs[b] < 0:
                raise RuntimeError(f"KV block {b} released twice")


class SlotPool:
    """GDN state slot ids: one per running sequence (plus reservations for pending forks)."""

    def __init__(self, num_slots: int) -> None:
        self.num_slots = num_slots
        self._free: list[int] = list(range(num_slots - 1, -1, -1))

    @property
    def num_free(self) -> int:
        return len(self._free)

    def allocate(self, count: int) -> list[int]:
        if count > len(self._free):
            raise MemoryError(f"need {count} state slots, {len(self._free)} free")
        return [self._free.pop() for _ in range(count)]

    def release(self, slots: list[int]) -> None:
        for s in slots:
            if s in self._free:
                raise RuntimeError(f"state slot {s} released twice")
            self._free.append(s)


@dataclass(frozen=True)
class PrefixHit:
    """A reusable prefix: KV blocks covering `num_tokens` and a GDN state checkpoint at that position."""

    num_tokens: int
    block_ids: tuple[int, ...]
    checkpoint_id: int


class PrefixCache(Protocol):
    """Hook for automatic prefix caching (hybrid-aware: a hit needs KV blocks AND a GDN state checkpoint).

    The scheduler asks `lookup` when admitting a sequence; on a hit the engine shares the blocks, restores the
    checkpoint into the sequence's slot and starts computing at `num_tokens`. `offer` is called when a sequence
    reaches a checkpointable position so the cache may keep its state.
    """

    def lookup(self, token_ids: list[int]) -> PrefixHit | None: ...

    def offer(self, token_ids: list[int], block_ids: list[int], slot: int) -> None: ...
