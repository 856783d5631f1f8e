"""The scheduler: one rule, computed tokens catch up with total tokens under a per-step token budget.

Owns the request and sequence state of the engine: `schedule()` decides a step as plain data (`SchedulerOutput`:
tokens to compute, cache resets / restores, prefix checkpoints to save, forks to copy), and `update()` applies the
runner's plain result (`RunnerOutput`: sampled ids, logprobs) -- computed tokens, prefix registration, appended
tokens, the thinking budget, stop conditions, finished requests -- and returns the step's `EngineOutput`s.
No torch, no model: unit-tested alone. There are no prefill/decode phases: a long prompt simply takes several
steps (chunked prefill), a decoding sequence asks for one token. Running sequences go first (oldest first); when
KV blocks run short the newest running sequence is preempted (its blocks and slot freed, recomputed later).
Waiting sequences are admitted FCFS while budget, sequence slots, GDN state slots and KV blocks allow.
Invariants: a step never schedules more than `max_num_batched_tokens` tokens; every scheduled sequence has blocks
for all of its tokens after the step; a finished or aborted sequence's blocks and slot are free at once.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter, deque
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

from qwen35.engine.cache import BlockPool, SlotPool
from qwen35.engine.prefix_cache import PrefixCache, PrefixHit
from qwen35.engine.request import (
    EngineOutput,
    FinishReason,
    MediaInput,
    SamplingParams,
    SequenceDelta,
    TokenLogprobs,
)
from qwen35.engine.sequence import RequestState, Sequence, SequenceStatus
from qwen35.engine.stopping import is_stop_id, stop_reason, track_thinking


@dataclass(frozen=True)
class ScheduledSequence:
    seq: Sequence
    num_new_tokens: int
    completes: bool  # after this step all known tokens are computed, so the step samples a token for it
    children: tuple[Sequence, ...] = ()  # forked off it this step: they sample from its logits row too


@dataclass
class SchedulerOutput:
    """One step, as the runner executes it: restores and resets, forward, saves, copies, then sampling."""

    scheduled: list[ScheduledSequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    fresh_slots: list[int] = field(default_factory=list)  # state slots whose sequence starts from position 0
    restores: list[tuple[int, int]] = field(default_factory=list)  # (checkpoint id, slot): prefix-cache hits
    saves: list[tuple[int, int]] = field(default_factory=list)  # (slot, checkpoint id): kept after the forward
    block_copies: list[tuple[int, int]] = field(default_factory=list)  # (src, dst) after the forward: forks
    slot_copies: list[tuple[int, int]] = field(default_factory=list)  # (src, dst) after the forward: forks
    finished_seq_ids: list[int] = field(default_factory=list)  # gone since the last step: runner state to drop

    @property
    def samplers(self) -> list[Sequence]:
        """The sequences that get a token this step, in the order of `RunnerOutput`: every completing sequence,
        followed by the children forked off it."""
        return [seq for item in self.scheduled if item.completes for seq in (item.seq, *item.children)]

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


@dataclass(frozen=True)
class RunnerOutput:
    """The runner's result for one `SchedulerOutput`: plain values, no tensors."""

    sampled_token_ids: list[int]  # aligned with SchedulerOutput.samplers
    logprobs: list[TokenLogprobs | None]  # aligned likewise; None where the sample asked for none
    prompt_logprobs: dict[int, list[TokenLogprobs]] = field(default_factory=dict)  # seq_id -> this chunk's positions


class Scheduler:
    def __init__(
        self,
        blocks: BlockPool,
        slots: SlotPool,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        prefix_cache: PrefixCache | None = None,
        *,
        eos_token_ids: tuple[int, ...] = (),
        max_model_len: int = 2**31,
    ) -> None:
        self.blocks = blocks
        self.prefix_cache = prefix_cache
        self.slots = slots
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.eos_token_ids = eos_token_ids
        self.max_model_len = max_model_len
        self.requests: dict[str, RequestState] = {}
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._seq_ids = itertools.count()
        self._finished_seq_ids: list[int] = []
        self.num_preemptions = 0  # total, for metrics and tests

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    # ---- requests ----------------------------------------------------------------------------------------------
    def add_request(self, request_id: str, prompt_token_ids: Seq[int], params: SamplingParams,
                    media: Seq[MediaInput] = ()) -> None:
        """Queue a new request (validated by the engine) as its first sequence."""
        self.add(Sequence(
            seq_id=next(self._seq_ids), request_id=request_id, sample_index=0, params=params,
            prompt_token_ids=list(prompt_token_ids), num_pending_forks=params.n - 1, media=tuple(media),
            thinking=params.thinking_budget is not None,
            grammar=params.grammar.matcher() if params.grammar is not None else None,
        ))

    def add(self, seq: Sequence) -> None:
        """Queue a request's first sequence (its n - 1 siblings are forked off it later)."""
        self.requests[seq.request_id] = RequestState(seq.request_id, [seq], seq.params.n, seq.num_prompt_tokens)
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def abort_request(self, request_id: str) -> bool:
        state = self.requests.pop(request_id, None)
        if state is None:
            return False
        for seq in state.seqs:
            self.finish(seq)
        return True

    def finish_sample(self, request_id: str, index: int) -> EngineOutput | None:
        """End one sample early (a stop string matched above the engine). Returns the final output when this
        completes the request, so its listener learns the request is over."""
        state = self.requests.get(request_id)
        if state is None:
            return None
        for seq in state.seqs:
            if seq.sample_index == index:
                self.finish(seq)
        if not state.done:
            return None
        del self.requests[request_id]
        return EngineOutput(request_id=request_id, sequences=[], num_prompt_tokens=state.num_prompt_tokens,
                            num_cached_tokens=state.seqs[0].num_cached_tokens, finished=True)

    def finish(self, seq: Sequence) -> None:
        """Remove a finished or aborted sequence wherever it is and free its resources at once."""
        if seq.is_finished:
            return
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
            self._release(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED
        self._finished_seq_ids.append(seq.seq_id)

    # ---- schedule ----------------------------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput(finished_seq_ids=self._finished_seq_ids)
        self._finished_seq_ids = []
        at_checkpoint: list[Sequence] = []
        budget = self._schedule_running(out, at_checkpoint)
        if not out.preempted:  # memory is short: admit nothing new this step
            self._admit_waiting(out, budget, at_checkpoint)
        # Only now, after this step's lookups: a checkpoint id taken here is written after the forward.
        for seq in at_checkpoint:
            assert self.prefix_cache is not None and seq.state_slot is not None and seq.checkpoint_at is not None
            checkpoint = self.prefix_cache.new_checkpoint(seq, seq.checkpoint_at)
            if checkpoint is not None:
                out.saves.append((seq.state_slot, checkpoint))
        for i, item in enumerate(out.scheduled):
            if item.completes and item.seq.num_pending_forks:
                children = self._fork(item.seq, item.seq.num_computed_tokens + item.num_new_tokens, out)
                out.scheduled[i] = dataclasses.replace(item, children=tuple(children))
        return out

    def _schedule_running(self, out: SchedulerOutput, at_checkpoint: list[Sequence]) -> int:
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
            self._add_scheduled(out, seq, num_new, at_checkpoint)
            budget -= num_new
            index += 1
        return budget

    def _admit_waiting(self, out: SchedulerOutput, budget: int, at_checkpoint: list[Sequence]) -> None:
        running_by_tenant = Counter(seq.params.tenant for seq in self.running)
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            at = self._next_waiting(running_by_tenant)
            seq = self.waiting[at]
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
            del self.waiting[at]
            running_by_tenant[seq.params.tenant] += 1
            slots = self.slots.allocate(seq.num_slots_needed)
            seq.state_slot, seq.reserved_slots = slots[0], slots[1:]
            seq.block_table.extend(self.blocks.allocate(need))
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            if hit is not None:
                out.restores.append((hit.checkpoint_id, seq.state_slot))
            elif seq.num_computed_tokens == 0:
                out.fresh_slots.append(seq.state_slot)
            self._add_scheduled(out, seq, num_new, at_checkpoint)
            budget -= num_new

    def _next_waiting(self, running_by_tenant: Counter[str | None]) -> int:
        """Index of the waiting sequence to admit next: preempted sequences first (they were running), then the
        oldest one of the tenant with the fewest running sequences (one key's burst cannot starve the others;
        with a single tenant this is first come, first served)."""
        if self.waiting[0].num_preemptions:  # preempted sequences go back to the front of the queue
            return 0
        best, best_running = 0, None
        for index, seq in enumerate(self.waiting):
            running = running_by_tenant[seq.params.tenant]
            if best_running is None or running < best_running:
                best, best_running = index, running
                if running == 0:
                    break
        return best

    @staticmethod
    def _add_scheduled(out: SchedulerOutput, seq: Sequence, num_new: int, at_checkpoint: list[Sequence]) -> None:
        end = seq.num_computed_tokens + num_new
        if seq.checkpoint_at is not None and end == seq.checkpoint_at:
            at_checkpoint.append(seq)
        out.scheduled.append(ScheduledSequence(seq, num_new, completes=end == seq.num_tokens))

    def _lookup(self, seq: Sequence) -> PrefixHit | None:
        """Prefix-cache hit for a sequence starting from scratch (never with prompt logprobs: they need every
        position computed)."""
        if self.prefix_cache is None or seq.num_computed_tokens or seq.params.prompt_logprobs is not None:
            return None
        return self.prefix_cache.lookup(seq.token_ids(), seq.media)

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

    def _fork(self, parent: Sequence, num_computed: int, out: SchedulerOutput) -> list[Sequence]:
        """Create the parent's n - 1 children sharing its prompt, computed (`num_computed` tokens) once this step
        has run; returns those that sample this step (the others wait to recompute the prompt on their own)."""
        sampling: list[Sequence] = []
        state = self.requests[parent.request_id]
        partial = num_computed % self.blocks.block_size != 0
        assert parent.state_slot is not None
        for k in range(1, parent.num_pending_forks + 1):
            child = Sequence(
                seq_id=next(self._seq_ids), request_id=parent.request_id, sample_index=k, params=parent.params,
                prompt_token_ids=parent.prompt_token_ids, num_cached_tokens=parent.num_cached_tokens,
                thinking=parent.thinking, media=parent.media,
                # forked before the parent's first token: every sample's matcher starts at the grammar's start
                grammar=parent.params.grammar.matcher() if parent.params.grammar is not None else None,
            )
            state.seqs.append(child)
            slot = parent.reserved_slots.pop() if parent.reserved_slots else None
            full = parent.block_table[:-1] if partial else list(parent.block_table)
            if slot is not None and (not partial or self.blocks.num_free > 0):
                self.blocks.share(full)
                child.block_table = list(full)
                if partial:
                    copy = self.blocks.allocate(1)[0]
                    out.block_copies.append((parent.block_table[-1], copy))
                    child.block_table.append(copy)
                child.state_slot = slot
                out.slot_copies.append((parent.state_slot, slot))
                child.num_computed_tokens = num_computed
                child.status = SequenceStatus.RUNNING
                self.running.append(child)
                sampling.append(child)
            else:  # no room to share: the child recomputes the prompt on its own later
                if slot is not None:
                    self.slots.release([slot])
                self.waiting.append(child)
        parent.num_pending_forks = 0
        return sampling

    # ---- update ------------------------------------------------------------------------------------------------
    def update(self, out: SchedulerOutput, result: RunnerOutput) -> list[EngineOutput]:
        """Apply one executed step: advance computed tokens, index prefixes, append sampled tokens, stop what
        ended, and report every request that changed (finished requests are forgotten here)."""
        for item in out.scheduled:
            seq = item.seq
            seq.num_computed_tokens += item.num_new_tokens
            if self.prefix_cache is not None:
                self.prefix_cache.register_blocks(seq)
            chunk = result.prompt_logprobs.get(seq.seq_id)
            if chunk is not None:
                if seq.prompt_logprobs is None:
                    seq.prompt_logprobs = [None]  # the first prompt token has no logprob
                seq.prompt_logprobs.extend(chunk)
        deltas: dict[str, list[SequenceDelta]] = {}
        for seq, token, logprobs in zip(out.samplers, result.sampled_token_ids, result.logprobs, strict=True):
            deltas.setdefault(seq.request_id, []).append(self._append_token(seq, token, logprobs))
        outputs: list[EngineOutput] = []
        for request_id, seq_deltas in deltas.items():
            state = self.requests[request_id]
            first = state.seqs[0]
            prompt_lps = None
            if first.params.prompt_logprobs is not None and not first.prompt_logprobs_sent:
                prompt_lps = first.prompt_logprobs or [None]
                first.prompt_logprobs_sent = True
            finished = state.done
            outputs.append(
                EngineOutput(
                    request_id=request_id, sequences=seq_deltas, num_prompt_tokens=state.num_prompt_tokens,
                    num_cached_tokens=first.num_cached_tokens, prompt_logprobs=prompt_lps, finished=finished,
                )
            )
            if finished:
                del self.requests[request_id]
        return outputs

    def _append_token(self, seq: Sequence, token: int, logprobs: TokenLogprobs | None) -> SequenceDelta:
        seq.output_token_ids.append(token)
        constrained = seq.grammar_active  # judged before `</think>` ends the think block: that tag is not answer
        track_thinking(seq, token)
        reason = stop_reason(seq, token, self.eos_token_ids, self.max_model_len, constrained)
        if reason is not None:
            self.finish(seq)
        # The stop-token convention (engine.request): the id that stopped it is reported apart, never as text.
        stopped = reason is FinishReason.STOP and is_stop_id(seq.params, token, self.eos_token_ids)
        new_logprobs = None if logprobs is None else [] if stopped else [logprobs]
        return SequenceDelta(
            index=seq.sample_index,
            new_token_ids=[] if stopped else [token],
            new_logprobs=new_logprobs,
            num_output_tokens=len(seq.output_token_ids),
            num_reasoning_tokens=seq.num_reasoning_tokens,
            finish_reason=reason,
            stop_token_id=token if stopped else None,
            stop_logprobs=logprobs if stopped else None,
        )
