"""Cache bookkeeping: ref-counted KV blocks for attention layers and GDN state slots. No torch.

Owns which block ids and slot ids are free. The tensors themselves live in the model's `ModelCache`; this module
only hands out ids.
Invariant: every block id is free, evictable (cached, no owner) or owned (ref count > 0), never two of these.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class BlockPool:
    """Ref-counted KV block ids; forked sequences share full blocks.

    A block that holds a registered prefix (see `engine.prefix_cache`) is not freed when its last owner lets go:
    it becomes *evictable*, still findable by its hash, and is reclaimed (least recently used first) only when the
    free list runs dry. `num_free` counts both, since both can be handed out.
    """

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        self._refs = [0] * num_blocks
        self._evictable: OrderedDict[int, None] = OrderedDict()  # cached blocks with no owner, LRU first
        self.cached: set[int] = set()  # blocks registered in the prefix index
        self.on_evict: Callable[[int], None] | None = None  # tells the prefix index a block was reclaimed

    @property
    def num_free(self) -> int:
        return len(self._free) + len(self._evictable)

    def blocks_needed(self, num_tokens: int, num_have: int) -> int:
        return max(0, -(-num_tokens // self.block_size) - num_have)

    def allocate(self, count: int) -> list[int]:
        if count > self.num_free:
            raise MemoryError(f"need {count} KV blocks, {self.num_free} free")
        blocks = []
        for _ in range(count):
            if self._free:
                block = self._free.pop()
            else:
                block, _ = self._evictable.popitem(last=False)
                self.cached.discard(block)
                if self.on_evict is not None:
                    self.on_evict(block)
            self._refs[block] = 1
            blocks.append(block)
        return blocks

    def share(self, blocks: list[int]) -> None:
        for b in blocks:
            if self._refs[b] == 0:
                del self._evictable[b]  # a cache hit revives an ownerless cached block
            self._refs[b] += 1

    def release(self, blocks: list[int]) -> None:
        for b in blocks:
            self._refs[b] -= 1
            if self._refs[b] == 0:
                if b in self.cached:
                    self._evictable[b] = None
                else:
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
