"""Prefix-affinity placement: which engine replica should compute a prompt (pure: no ray, no torch).

Owns `PrefixPlacement`: a bounded LRU table from a chain hash of the prompt's leading token blocks to the replica
that last computed them, and the rule that picks a replica. Longest recorded prefix wins; a prompt no replica
holds goes to the rendezvous-hash owner of its first block (the same choice on every front, with no shared
state); a preferred replica carrying more than `max(imbalance_abs, imbalance_rel * lightest)` requests above the
lightest is passed over for the lightest (the bound on imbalance), and the prefix moves with it. Invariant: a
replica that is gone (`forget`) is never chosen again and its prefixes fall back to the rendezvous rule.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


def prefix_hashes(token_ids: Sequence[int], block_tokens: int, max_blocks: int = 64) -> list[bytes]:
    """Chain hashes of the prompt's leading full blocks (at most `max_blocks`), then of the whole prompt when it
    ends inside a block: entry i names tokens [0, (i + 1) * block_tokens)."""
    hashes: list[bytes] = []
    digest = b""
    full = min(len(token_ids) // block_tokens, max_blocks)
    for i in range(full):
        block = token_ids[i * block_tokens:(i + 1) * block_tokens]
        digest = _hash(digest, block)
        hashes.append(digest)
    if full < max_blocks and len(token_ids) > full * block_tokens:
        hashes.append(_hash(digest, token_ids[full * block_tokens:]))
    return hashes


def _hash(parent: bytes, tokens: Sequence[int]) -> bytes:
    h = hashlib.blake2b(parent, digest_size=16)
    h.update(b"".join(int(t).to_bytes(4, "little") for t in tokens))
    return h.digest()


def rendezvous_order(key: bytes, replicas: Sequence[str]) -> list[str]:
    """Replicas by highest-random-weight for `key`: stable while replicas come and go (only a lost replica's
    keys move)."""
    return sorted(replicas, key=lambda r: hashlib.blake2b(key + r.encode(), digest_size=8).digest(), reverse=True)


@dataclass
class Placement:
    replica: str
    reason: str  # "prefix" (a recorded prefix), "hash" (rendezvous owner), "load" (imbalance bound), "only"
    matched_blocks: int = 0


@dataclass
class PrefixPlacement:
    block_tokens: int = 32
    max_entries: int = 200_000  # ~20 MB of table at most
    imbalance_abs: int = 4
    imbalance_rel: float = 0.5
    _table: OrderedDict[bytes, str] = field(default_factory=OrderedDict)

    def choose(self, token_ids: Sequence[int], loads: Mapping[str, int]) -> Placement:
        """The replica for a prompt among `loads` (replica -> requests in flight); `loads` must not be empty."""
        if not loads:
            raise ValueError("no replica to choose from")
        if len(loads) == 1:
            return Placement(next(iter(loads)), "only")
        hashes = prefix_hashes(token_ids, self.block_tokens)
        preferred, reason, matched = None, "hash", 0
        for i in range(len(hashes) - 1, -1, -1):
            owner = self._table.get(hashes[i])
            if owner is not None and owner in loads:
                preferred, reason, matched = owner, "prefix", i + 1
                break
        if preferred is None:
            preferred = rendezvous_order(hashes[0] if hashes else b"", list(loads))[0]
        lightest = min(loads, key=lambda r: (loads[r], r))
        if loads[preferred] - loads[lightest] > max(self.imbalance_abs, self.imbalance_rel * loads[lightest]):
            return Placement(lightest, "load", matched)
        return Placement(preferred, reason, matched)

    def record(self, token_ids: Sequence[int], replica: str) -> None:
        """`replica` computes this prompt now: its prefixes are looked for there."""
        for digest in prefix_hashes(token_ids, self.block_tokens):
            self._table[digest] = replica
            self._table.move_to_end(digest)
        while len(self._table) > self.max_entries:
            self._table.popitem(last=False)

    def forget(self, replica: str) -> None:
        """A replica is gone: drop its prefixes."""
        for digest in [d for d, r in self._table.items() if r == replica]:
            del self._table[digest]

    def __len__(self) -> int:
        return len(self._table)
