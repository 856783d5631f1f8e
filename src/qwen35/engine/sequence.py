"""A running sample and its request: the mutable per-sequence and per-request state the scheduler owns.

Imports no torch. A request with n samples starts as one sequence (the parent) that prefills the prompt once and
forks n - 1 children when its first token is sampled. The scheduler writes this state (in `schedule` and
`update`); the runner only reads it. Invariant: `num_computed_tokens <= num_tokens`, and the block table always
covers `num_computed_tokens` (plus what the current step schedules).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from qwen35.engine.request import GrammarMatcher, MediaInput, SamplingParams, TokenLogprobs


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
    output_token_ids: list[int] = field(default_factory=list)  # the stop/eos id that ended it included
    num_computed_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    state_slot: int | None = None
    reserved_slots: list[int] = field(default_factory=list)  # slots held for children not yet forked
    num_pending_forks: int = 0
    status: SequenceStatus = SequenceStatus.WAITING
    prompt_logprobs: list[TokenLogprobs | None] | None = None
    prompt_logprobs_sent: bool = False
    num_cached_tokens: int = 0
    # Thinking budget bookkeeping: tokens produced while inside the think block.
    thinking: bool = False
    num_reasoning_tokens: int = 0
    forced_token_ids: list[int] = field(default_factory=list)
    # Structured output: this sample's matcher (None without a grammar); it constrains answer tokens only.
    grammar: GrammarMatcher | None = field(default=None, repr=False)
    num_preemptions: int = 0
    block_hashes: list[bytes] = field(default_factory=list)  # prefix-cache chain hashes of full prompt blocks
    checkpoint_at: int | None = None  # prompt position where the prefix cache wants this sequence's state kept
    media: tuple[MediaInput, ...] = ()  # media placeholder runs of the prompt, by offset

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def grammar_active(self) -> bool:
        """The grammar constrains the next token: there is one, and the sample is past its think block."""
        return self.grammar is not None and not self.thinking

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    def token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_slots_needed(self) -> int:
        return 1 + self.num_pending_forks

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED


@dataclass
class RequestState:
    """One request: its n samples (the parent first, children as they are forked)."""

    request_id: str
    seqs: list[Sequence]
    n: int
    num_prompt_tokens: int

    @property
    def done(self) -> bool:
        """Every one of the n samples exists (forked) and has finished."""
        return len(self.seqs) == self.n and all(s.is_finished for s in self.seqs)
