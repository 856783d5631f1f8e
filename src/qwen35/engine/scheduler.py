"""The scheduler: one rule, computed tokens catch up with total tokens under a per-step token budget.

No torch, no model: it consumes and emits plain data and is unit-tested alone. There are no prefill/decode phases:
a long prompt simply takes several steps (chunked prefill), a decoding sequence asks for one token. Running
sequences go first (oldest first); when KV blocks run short the newest running sequence is preempted (its blocks
and slot freed, recomputed later). Waiting sequences are admitted FCFS while budget, sequence slots, GDN state slots
and KV blocks allow. Invariant: a step never schedules more than `max_num_batched_tokens` tokens, and every
scheduled sequence has blocks for all of its tokens after the step.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from qwen35.engine.cache import BlockPool, SlotPool
from qwen35.engine.prefix_cache import PrefixCache, PrefixHit
from qwen35.engine.sequence import Sequence, SequenceStatus


@dataclass(frozen=True)
class ScheduledSequence:
    seq: Sequence
    num_new_tokens: int

    @property
    def completes(self) -> bool:
        """After this step all known tokens are computed, so the step samples a token for it."""
        return self.seq.num_computed_tokens + self.num_new_tokens == self.seq.num_tokens


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledSequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    fresh_slots: list[int] = field(default_factory=list)  # state slots whose sequence starts from position 0
    restores: list[tuple[int, int]] = field(default_factory=list)  # (checkpoint id, slot): prefix-cache hits
    checkpoints: list[Sequence] = field(default_factory=list)  # sequences whose step ends at their checkpoint_at

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


@dataclass(frozen=True)
class ForkPlan:
    """Children created from a parent after its prompt was computed, and the cache copies they need."""

    children: list[Sequence]
    block_copies: list[tuple[int, int]]  # (src block, dst block): copy-on-write of the shared partial block
    slot_copies: list[tuple[int, int]]  # (src slot, dst slot)


class Scheduler:
    def __init__(
        self,
        blocks: BlockPool,
        slots: SlotPool,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        prefix_cache: PrefixCache | None = None,
    ) -> None:
        self.blocks = blocks
        self.prefix_cache = prefix_cache
        self.slots = slots
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._seq_ids = itertools.count(1_000_000)
        self.num_preemptions = 0  # total, for metrics and tests

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            num_new = self._chunk(seq, budget)
            need = self.blocks.blocks_needed(seq.num_computed_tokens + num_new, len(seq.block_table))
            while need > self.blocks.num_free:
                victim = self.running.pop()
                self._preempt(victim)
                out.preempted.append(victim)
                if victim is seq:
                    break
            if seq.status is not SequenceStatus.RUNNING:
                break
            seq.block_table.extend(self.blocks.allocate(need))
            self._note_checkpoint(seq, num_new, out)
            out.scheduled.append(ScheduledSequence(seq, num_new))
            budget -= num_new
            index += 1
        if out.preempted:
            return out  # memory is short: admit nothing new this step
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if seq.num_slots_needed > self.slots.num_free:
                break
            hit = self._lookup(seq)
            if hit is not None:
                self.blocks.share(hit.block_ids)  # before allocating, so allocation cannot evict them
                seq.block_table = list(hit.block_ids)
                seq.num_computed_tokens = hit.num_tokens
                if not seq.num_preemptions:  # billing counts the first admission's hit only
                    seq.num_cached_tokens = hit.num_tokens
            num_new = self._chunk(seq, budget)
            need = self.blocks.blocks_needed(seq.num_computed_tokens + num_new, len(seq.block_table))
            # Forks copy the partial last block: keep one spare block per pending child.
            if need + seq.num_pending_forks > self.blocks.num_free:
                if hit is not None:  # undo: the blocks go back to the evictable cache
                    self.blocks.release(seq.block_table)
                    seq.block_table, seq.num_computed_tokens = [], 0
                    if not seq.num_preemptions:
                        seq.num_cached_tokens = 0
                break
            self.waiting.popleft()
            slots = self.slots.allocate(seq.num_slots_needed)
            seq.state_slot, seq.reserved_slots = slots[0], slots[1:]
            seq.block_table.extend(self.blocks.allocate(need))
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            if hit is not None:
                out.restores.append((hit.checkpoint_id, seq.state_slot))
            elif seq.num_computed_tokens == 0:
                out.fresh_slots.append(seq.state_slot)
            self._note_checkpoint(seq, num_new, out)
            out.scheduled.append(ScheduledSequence(seq, num_new))
            budget -= num_new
        return out

    def _lookup(self, seq: Sequence) -> PrefixHit | None:
        """Prefix-cache hit for a sequence starting from scratch (never with prompt logprobs: they need every
        position computed)."""
        if self.prefix_cache is None or seq.num_computed_tokens or seq.params.prompt_logprobs is not None:
            return None
        return self.prefix_cache.lookup(seq.token_ids())

    def _chunk(self, seq: Sequence, budget: int) -> int:
        """Tokens to compute this step: all that are known, within budget, ending at the checkpoint position."""
        num_new = min(seq.num_tokens - seq.num_computed_tokens, budget)
        if self.prefix_cache is not None and seq.num_computed_tokens < seq.num_prompt_tokens:
            if seq.checkpoint_at is None or seq.checkpoint_at <= seq.num_computed_tokens:
                seq.checkpoint_at = self.prefix_cache.checkpoint_position(seq.num_prompt_tokens,
                                                                          seq.num_computed_tokens)
            if seq.checkpoint_at is not None and seq.num_computed_tokens < seq.checkpoint_at:
                num_new = min(num_new, seq.checkpoint_at - seq.num_computed_tokens)
        return num_new

    @staticmethod
    def _note_checkpoint(seq: Sequence, num_new: int, out: SchedulerOutput) -> None:
        if seq.checkpoint_at is not None and seq.num_computed_tokens + num_new == seq.checkpoint_at:
            out.checkpoints.append(seq)

    def _release(self, seq: Sequence) -> None:
        self.blocks.release(seq.block_table)
        seq.block_table = []
        held = ([seq.state_slot] if seq.state_slot is not None else []) + seq.reserved_slots
        self.slots.release(held)
        seq.state_slot, seq.reserved_slots = None, []

    def _preempt(self, seq: Sequence) -> None:
        """Free everything; the sequence recomputes its prompt and outputs when readmitted."""
        self._release(seq)
        seq.num_computed_tokens = 0
        seq.num_preemptions += 1
        self.num_preemptions += 1
        if not seq.prompt_logprobs_sent:
            seq.prompt_logprobs = None
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence) -> None:
        """Remove a finished or aborted sequence wherever it is and free its resources at once."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
            self._release(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED

    def fork(self, parent: Sequence) -> ForkPlan:
        """Create the parent's n - 1 children sharing its computed prompt (called before its first token)."""
        children: list[Sequence] = []
        block_copies: list[tuple[int, int]] = []
        slot_copies: list[tuple[int, int]] = []
        partial = parent.num_computed_tokens % self.blocks.block_size != 0
        for k in range(1, parent.num_pending_forks + 1):
            child = Sequence(
                seq_id=next(self._seq_ids), request_id=parent.request_id, sample_index=k, params=parent.params,
                prompt_token_ids=parent.prompt_token_ids, arrival=parent.arrival,
                num_cached_tokens=parent.num_cached_tokens, thinking=parent.thinking,
            )
            slot = parent.reserved_slots.pop() if parent.reserved_slots else None
            full = parent.block_table[:-1] if partial else list(parent.block_table)
            if slot is not None and (not partial or self.blocks.num_free > 0):
                self.blocks.share(full)
                child.block_table = list(full)
                if partial:
                    copy = self.blocks.allocate(1)[0]
                    block_copies.append((parent.block_table[-1], copy))
                    child.block_table.append(copy)
                child.state_slot = slot
                slot_copies.append((parent.state_slot, slot))  # type: ignore[arg-type]
                child.num_computed_tokens = parent.num_computed_tokens
                child.status = SequenceStatus.RUNNING
                self.running.append(child)
            else:  # no room to share: the child recomputes the prompt on its own later
                if slot is not None:
                    self.slots.release([slot])
                self.waiting.append(child)
            children.append(child)
        parent.num_pending_forks = 0
        return ForkPlan(children, block_copies, slot_copies)
