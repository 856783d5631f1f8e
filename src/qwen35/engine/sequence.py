"""A running sample: the mutable per-sequence state the scheduler and engine share.

Imports no torch. A request with n samples starts as one sequence (the parent) that prefills the prompt once and
forks n - 1 children when its first token is sampled. Invariant: `num_computed_tokens <= num_tokens`, and the
block table always covers `num_computed_tokens` (plus what the current step schedules).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from qwen35.engine.request import FinishReason, SamplingParams, TokenLogprobs


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class Sequence:
    seq_id: int
    request_id: str
    sample_index: int
    params: SamplingParams
    prompt_token_ids: list[int]
    arrival: float
    output_token_ids: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    state_slot: int | None = None
    reserved_slots: list[int] = field(default_factory=list)  # slots held for children not yet forked
    num_pending_forks: int = 0
    status: SequenceStatus = SequenceStatus.WAITING
    finish_reason: FinishReason | None = None
    stop_token_id: int | None = None
    output_logprobs: list[TokenLogprobs] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprobs | None] | None = None
    prompt_logprobs_sent: bool = False
    num_cached_tokens: int = 0
    # Thinking budget bookkeeping (engine-owned): tokens produced while inside the think block.
    thinking: bool = False
    num_reasoning_tokens: int = 0
    forced_token_ids: list[int] = field(default_factory=list)
    num_preemptions: int = 0
    block_hashes: list[bytes] = field(default_factory=list)  # prefix-cache chain hashes of full prompt blocks
    checkpoint_at: int | None = None  # prompt position where the prefix cache wants this sequence's state kept

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    def token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    def token_at(self, position: int) -> int:
        n = len(self.prompt_token_ids)
        return self.prompt_token_ids[position] if position < n else self.output_token_ids[position - n]

    @property
    def num_slots_needed(self) -> int:
        return 1 + self.num_pending_forks

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED
