"""Automatic prefix caching for a hybrid model: KV blocks by hash chain + Gated DeltaNet state checkpoints.

A reused attention prefix is worthless without the DeltaNet state at the same position, so a hit needs both:
every full KV block of the prefix (found by a hash chain over token blocks) and a state checkpoint taken at the
end of that prefix. Checkpoints are taken at a block boundary just before the end of each prompt (the scheduler
ends a prefill chunk there), which is where follow-up requests (same system prompt, next chat turn, retries)
diverge. Checkpoints are big (~50 MB for the 4B in fp32), so they are few and evicted LRU. No torch: the
scheduler asks for checkpoint ids and the runner copies the tensors. Invariant: a hit never covers the whole
prompt (one token is always computed, so the request has logits to sample from), and a checkpoint is only
reported while every block of its chain is cached. A block that overlaps a media run hashes the run's digest
(pixels and grid) with its tokens: the placeholder ids alone are the same for every image.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass

from qwen35.engine.cache import BlockPool
from qwen35.engine.request import MediaInput
from qwen35.engine.sequence import Sequence

# Keep the checkpoint a few tokens before the prompt's end: the next chat turn re-renders the generation prompt
# (`<|im_start|>assistant\n<think>\n`) differently, so the last tokens of a prompt are rarely shared.
_TAIL_MARGIN = 4


@dataclass(frozen=True)
class PrefixHit:
    num_tokens: int
    block_ids: list[int]
    checkpoint_id: int


def _block_hash(parent: bytes, token_ids: list[int], index: int, block_size: int,
                media: tuple[MediaInput, ...] = ()) -> bytes:
    """Chain hash of block `index` of `token_ids`, with the digests of the media runs it overlaps."""
    start, end = index * block_size, (index + 1) * block_size
    extra = b"".join(m.digest for m in media if m.offset < end and m.end > start)
    return hashlib.blake2b(parent + array("q", token_ids[start:end]).tobytes() + extra, digest_size=16).digest()


def chain_hashes(token_ids: list[int], block_size: int, num_blocks: int,
                 media: tuple[MediaInput, ...] = ()) -> list[bytes]:
    """Hash of each of the first `num_blocks` full blocks, chained so a hash names the whole prefix."""
    hashes: list[bytes] = []
    parent = b""
    for i in range(num_blocks):
        parent = _block_hash(parent, token_ids, i, block_size, media)
        hashes.append(parent)
    return hashes


class PrefixCache:
    def __init__(self, blocks: BlockPool, num_checkpoints: int) -> None:
        self.blocks = blocks
        self.block_size = blocks.block_size
        self.num_checkpoints = num_checkpoints
        self._block_of: dict[bytes, int] = {}
        self._hash_of: dict[int, bytes] = {}
        self._checkpoints: OrderedDict[bytes, int] = OrderedDict()  # chain hash at a boundary -> checkpoint id, LRU
        self._free_checkpoints = list(range(num_checkpoints - 1, -1, -1))
        blocks.on_evict = self._forget_block
        self.num_queries = 0
        self.num_hits = 0
        self.num_hit_tokens = 0

    @property
    def enabled(self) -> bool:
        return self.num_checkpoints > 0

    def _forget_block(self, block: int) -> None:
        digest = self._hash_of.pop(block, None)
        if digest is not None and self._block_of.get(digest) == block:
            del self._block_of[digest]

    def checkpoint_position(self, num_prompt_tokens: int, num_computed: int) -> int | None:
        """The block boundary where this prompt's state should be kept, if beyond what is computed already."""
        if not self.enabled:
            return None
        position = (num_prompt_tokens - _TAIL_MARGIN) // self.block_size * self.block_size
        return position if position > num_computed else None

    def lookup(self, token_ids: list[int], media: tuple[MediaInput, ...] = ()) -> PrefixHit | None:
        """Longest cached prefix (< len(token_ids)) with every block and a state checkpoint at its end."""
        if not self.enabled:
            return None
        self.num_queries += 1
        max_blocks = (len(token_ids) - 1) // self.block_size
        hashes = chain_hashes(token_ids, self.block_size, max_blocks, media)
        found: list[int] = []
        for digest in hashes:
            block = self._block_of.get(digest)
            if block is None:
                break
            found.append(block)
        for n in range(len(found), 0, -1):
            checkpoint = self._checkpoints.get(hashes[n - 1])
            if checkpoint is not None:
                self._checkpoints.move_to_end(hashes[n - 1])
                self.num_hits += 1
                self.num_hit_tokens += n * self.block_size
                return PrefixHit(n * self.block_size, found[:n], checkpoint)
        return None

    def register_blocks(self, seq: Sequence) -> None:
        """Index the sequence's full, computed prompt blocks (incremental; the first block for a hash wins)."""
        if not self.enabled:
            return
        num_full = min(seq.num_computed_tokens, seq.num_prompt_tokens) // self.block_size
        done = len(seq.block_hashes)
        if num_full <= done:
            return
        parent = seq.block_hashes[-1] if seq.block_hashes else b""
        for i in range(done, num_full):
            parent = _block_hash(parent, seq.prompt_token_ids, i, self.block_size, seq.media)
            seq.block_hashes.append(parent)
            block = seq.block_table[i]
            if parent in self._block_of or block in self._hash_of:
                continue
            self._block_of[parent] = block
            self._hash_of[block] = parent
            self.blocks.cached.add(block)

    def new_checkpoint(self, seq: Sequence, position: int) -> int | None:
        """A checkpoint id for the sequence's state at `position` (a block boundary of its prompt), or None when
        that prefix has one already.

        Called when the step that reaches `position` is scheduled, after every lookup of that step, so the id
        (maybe evicted from an older prefix) is written only after this step's restores have read their own.
        """
        digest = self._chain_hash(seq, position // self.block_size)
        if digest in self._checkpoints:
            self._checkpoints.move_to_end(digest)
            return None
        if self._free_checkpoints:
            checkpoint = self._free_checkpoints.pop()
        else:
            _, checkpoint = self._checkpoints.popitem(last=False)
        self._checkpoints[digest] = checkpoint
        return checkpoint

    def _chain_hash(self, seq: Sequence, num_blocks: int) -> bytes:
        """The chain hash of the sequence's first `num_blocks` prompt blocks (whether registered yet or not)."""
        if num_blocks <= len(seq.block_hashes):
            return seq.block_hashes[num_blocks - 1]
        parent = seq.block_hashes[-1] if seq.block_hashes else b""
        for i in range(len(seq.block_hashes), num_blocks):
            parent = _block_hash(parent, seq.prompt_token_ids, i, self.block_size, seq.media)
        return parent

    def stats(self) -> dict[str, int]:
        return {"queries": self.num_queries, "hits": self.num_hits, "hit_tokens": self.num_hit_tokens,
                "checkpoints": len(self._checkpoints), "cached_blocks": len(self._block_of)}
