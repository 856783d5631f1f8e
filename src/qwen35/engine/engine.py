"""The synchronous engine: step = schedule -> run -> update.

Owns request bookkeeping (a request is n sequences), validation at the door, stop conditions (stop/eos ids,
max_tokens, context length, grammar), the thinking budget and forking n samples off one prefill. Sees token ids only.
Invariant: when a request finishes or is aborted, every KV block and state slot it held is free the same step.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

from qwen35.engine.cache import BlockPool, SlotPool
from qwen35.engine.prefix_cache import PrefixCache
from qwen35.engine.request import (
    ContextLengthError,
    EngineError,
    EngineOutput,
    EngineOverloadedError,
    FinishReason,
    SamplingParams,
    SequenceDelta,
)
from qwen35.engine.runner import ModelRunner, SampledToken
from qwen35.engine.scheduler import Scheduler
from qwen35.engine.sequence import Sequence


@dataclass(frozen=True)
class EngineConfig:
    max_model_len: int
    eos_token_ids: tuple[int, ...]
    max_num_seqs: int = 16
    max_num_batched_tokens: int = 512
    block_size: int = 16
    num_kv_blocks: int = 1024
    num_state_slots: int = 16
    max_waiting: int = 512
    num_prefix_checkpoints: int = 0  # 0 disables automatic prefix caching


@dataclass
class _RequestState:
    request_id: str
    seqs: list[Sequence]
    n: int
    num_prompt_tokens: int
    prompt_logprobs_sent: bool = False

    @property
    def done(self) -> bool:
        """Every one of the n samples exists (forked) and has finished."""
        return len(self.seqs) == self.n and all(s.is_finished for s in self.seqs)


class LLMEngine:
    def __init__(self, runner: ModelRunner, config: EngineConfig, model_dir: Path | None = None) -> None:
        self.runner = runner
        self.model_dir = model_dir  # the resolved checkpoint (None for dummy weights on a hub id)
        self.config = config
        self.vocab_size = runner.vocab_size
        self.max_model_len = config.max_model_len
        self.blocks = BlockPool(config.num_kv_blocks, config.block_size)
        self.slots = SlotPool(config.num_state_slots)
        self.prefix_cache = PrefixCache(self.blocks, config.num_prefix_checkpoints)
        self.scheduler = Scheduler(self.blocks, self.slots, config.max_num_seqs, config.max_num_batched_tokens,
                                   self.prefix_cache if self.prefix_cache.enabled else None)
        self.requests: dict[str, _RequestState] = {}
        self._seq_ids = itertools.count()

    # ---- admission -------------------------------------------------------------------------------------------
    def validate(self, request_id: str, prompt_token_ids: Seq[int], params: SamplingParams) -> None:
        """Raise a typed error for input the engine must refuse; mutates nothing."""
        if request_id in self.requests:
            raise EngineError(f"request id {request_id!r} is already running", "request_id")
        if len(prompt_token_ids) == 0:
            raise EngineError("prompt must contain at least one token", "prompt")
        if any(not isinstance(t, int) or not 0 <= t < self.vocab_size for t in prompt_token_ids):
            raise EngineError(f"prompt token ids must be integers in [0, {self.vocab_size})", "prompt")
        params.validate(self.vocab_size)
        num_prompt = len(prompt_token_ids)
        if num_prompt >= self.max_model_len:
            raise ContextLengthError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, your prompt has "
                f"{num_prompt} tokens, leaving no room for output."
            )
        if params.max_tokens is not None and num_prompt + params.max_tokens > self.max_model_len:
            raise ContextLengthError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{num_prompt + params.max_tokens} tokens ({num_prompt} in the prompt, {params.max_tokens} for the "
                "completion). Please reduce the prompt or max_tokens."
            )
        if params.n > self.config.num_state_slots:
            raise EngineError(f"n must be at most {self.config.num_state_slots} on this server", "n")
        # Admission keeps a spare block per extra sample (copy-on-write at the fork): refuse what could never start.
        if self.blocks.blocks_needed(num_prompt, 0) + params.n - 1 > self.config.num_kv_blocks:
            raise EngineError(f"n={params.n} samples of a {num_prompt}-token prompt do not fit the KV cache", "n")
        if self.scheduler.num_unfinished >= self.config.max_waiting:
            raise EngineOverloadedError("the engine queue is full; retry later")

    def add_request(self, request_id: str, prompt_token_ids: Seq[int], params: SamplingParams) -> None:
        self.validate(request_id, prompt_token_ids, params)
        seq = Sequence(
            seq_id=next(self._seq_ids), request_id=request_id, sample_index=0, params=params,
            prompt_token_ids=list(prompt_token_ids), arrival=time.monotonic(), num_pending_forks=params.n - 1,
            thinking=params.thinking_budget is not None,
        )
        self.requests[request_id] = _RequestState(request_id, [seq], params.n, len(prompt_token_ids))
        self.scheduler.add(seq)

    def abort_request(self, request_id: str) -> bool:
        state = self.requests.pop(request_id, None)
        if state is None:
            return False
        for seq in state.seqs:
            self._finish(seq, FinishReason.ABORT)
        return True

    def finish_sample(self, request_id: str, index: int) -> EngineOutput | None:
        """End one sample early (a stop string matched above the engine). Returns the final output when this
        completes the request, so its listener learns the request is over."""
        state = self.requests.get(request_id)
        if state is None:
            return None
        for seq in state.seqs:
            if seq.sample_index == index:
                self._finish(seq, FinishReason.STOP)
        if state.done:
            del self.requests[request_id]
            first = state.seqs[0]
            return EngineOutput(request_id=request_id, sequences=[], num_prompt_tokens=state.num_prompt_tokens,
                                num_cached_tokens=first.num_cached_tokens, finished=True)
        return None

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    # ---- the step ----------------------------------------------------------------------------------------------
    def step(self) -> list[EngineOutput]:
        out = self.scheduler.schedule()
        if out.is_empty:
            return []
        logits = self.runner.forward(out)
        for item in out.scheduled:
            item.seq.num_computed_tokens += item.num_new_tokens
            self.prefix_cache.register_blocks(item.seq)
        for seq in out.checkpoints:
            checkpoint = self.prefix_cache.new_checkpoint(seq, seq.num_computed_tokens)
            if checkpoint is not None:
                self.runner.save_checkpoint(seq.state_slot, checkpoint)  # type: ignore[arg-type]
        children: dict[int, list[Sequence]] = {}
        for parent in logits.samplers:
            if parent.num_pending_forks:
                plan = self.scheduler.fork(parent)
                self.runner.copy_cache(plan.block_copies, plan.slot_copies)
                self.requests[parent.request_id].seqs.extend(plan.children)
                children[parent.seq_id] = [c for c in plan.children if c.state_slot is not None]
        sampled = self.runner.sample(logits, children)
        return self._update(sampled)

    def _update(self, sampled: list[SampledToken]) -> list[EngineOutput]:
        deltas: dict[str, list[SequenceDelta]] = {}
        for item in sampled:
            seq, token = item.seq, item.token_id
            seq.output_token_ids.append(token)
            if item.logprobs is not None:
                seq.output_logprobs.append(item.logprobs)
            self._track_thinking(seq, token)
            reason = self._stop_reason(seq, token)
            if reason is not None:
                self._finish(seq, reason)
            deltas.setdefault(seq.request_id, []).append(
                SequenceDelta(
                    index=seq.sample_index,
                    new_token_ids=[token],
                    new_logprobs=[item.logprobs] if item.logprobs is not None else None,
                    num_output_tokens=len(seq.output_token_ids),
                    num_reasoning_tokens=seq.num_reasoning_tokens,
                    finish_reason=reason,
                    stop_token_id=token if reason is FinishReason.STOP and self._is_stop_id(seq, token) else None,
                )
            )
        outputs: list[EngineOutput] = []
        for request_id, seq_deltas in deltas.items():
            state = self.requests[request_id]
            first = state.seqs[0]
            prompt_lps = None
            if first.params.prompt_logprobs is not None and not state.prompt_logprobs_sent:
                prompt_lps = first.prompt_logprobs or [None]
                state.prompt_logprobs_sent = first.prompt_logprobs_sent = True
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

    def _track_thinking(self, seq: Sequence, token: int) -> None:
        budget = seq.params.thinking_budget
        if budget is None or not seq.thinking:
            return
        if seq.forced_token_ids:
            seq.forced_token_ids.pop(0)
        seq.num_reasoning_tokens += 1
        if token == budget.think_end_id:
            seq.thinking = False
            seq.forced_token_ids.clear()
        elif seq.num_reasoning_tokens >= budget.max_thinking_tokens and not seq.forced_token_ids:
            seq.forced_token_ids = [*budget.wind_down_ids, budget.think_end_id]

    def _is_stop_id(self, seq: Sequence, token: int) -> bool:
        params = seq.params
        if params.stop_token_ids and token in params.stop_token_ids:
            return True
        return not params.ignore_eos and token in self.config.eos_token_ids

    def _stop_reason(self, seq: Sequence, token: int) -> FinishReason | None:
        params = seq.params
        if len(seq.output_token_ids) > params.min_tokens - 1 and self._is_stop_id(seq, token):
            return FinishReason.STOP
        if params.grammar is not None:
            params.grammar.accept(token)
            if params.grammar.is_terminated():
                return FinishReason.STOP
        if params.max_tokens is not None and len(seq.output_token_ids) >= params.max_tokens:
            return FinishReason.LENGTH
        if seq.num_tokens >= self.max_model_len:
            return FinishReason.LENGTH
        return None

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        if seq.is_finished:
            return
        seq.finish_reason = reason
        self.scheduler.finish(seq)
        self.runner.release(seq)
