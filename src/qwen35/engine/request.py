"""Engine data types: sampling parameters, typed input errors, per-step outputs.

Owns the value types that cross the engine boundary. Imports no torch, no text, no HTTP: the engine works on
token ids only; stop strings are carried through for the processor layer but never read here.
Invariants: a `SamplingParams` that passed `validate()` can never crash the decode loop; `validate()` is called
once per request, by the engine at its door (`LLMEngine.validate`), never by the layers above it.

The stop-token convention (one for every engine, the scripted test double included): the stop or eos id that
ended a sample is never in `SequenceDelta.new_token_ids` (nor its logprobs in `new_logprobs`); it is reported in
`stop_token_id` (its logprobs in `stop_logprobs`), and it is counted in `num_output_tokens`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class EngineError(ValueError):
    """Bad input to the engine (typed so every API maps it to a 400). `param` names the culprit."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class ContextLengthError(EngineError):
    """Prompt (+ requested output) does not fit the model's context."""

    def __init__(self, message: str, param: str | None = "messages") -> None:
        super().__init__(message, param=param, code="context_length_exceeded")


class EngineOverloadedError(RuntimeError):
    """The waiting queue is full: the request was refused before any work (503 / 529)."""


class EngineDeadError(RuntimeError):
    """The engine thread is gone: nothing can be generated until the process is restarted."""


class GrammarMatcher(Protocol):
    """One sample's position in a structured-output grammar (made by `Grammar.matcher`, one per sample).

    The engine calls `fill_bitmask` before sampling and `accept` after, for answer tokens only: while a sample is
    thinking (inside its think block) the grammar waits; it starts with the first token after `</think>`. Outputs
    survive preemption (the sequence recomputes its cache, not its tokens), so a matcher never rolls back.
    """

    def fill_bitmask(self, bitmask: object, index: int) -> None:
        """Write row `index` of `bitmask` (int32 [rows, ceil(vocab / 32)]; bit j of word w set = token 32w + j
        allowed: xgrammar's layout)."""

    def accept(self, token_id: int) -> bool:
        """Advance with the sampled token; False if it was not allowed."""

    def is_terminated(self) -> bool:
        """True when the grammar is complete and nothing but a stop token may follow."""


class Grammar(Protocol):
    """A compiled structured-output constraint shared by a request's samples (built above the engine)."""

    def matcher(self) -> GrammarMatcher:
        """A fresh matcher at the grammar's start."""


@dataclass(frozen=True)
class MediaInput:
    """One run of media placeholder tokens in a prompt and the pixels that fill it: an image, or one temporal
    group (two frames) of a video. Built above the engine by the processors; the runner encodes it once.

    `patches` is a float32 array [t * h * w, patch_dim] in merge-block order (numpy; the engine hands it to the
    vision tower). `digest` names the pixels and the grid: it is part of the prefix-cache key of every block the
    run overlaps, so the same text with another image never hits.
    """

    offset: int  # index in the prompt of the run's first placeholder token
    grid: tuple[int, int, int]  # (t, h, w) patch grid (t == 1 per run: a video is one run per temporal group)
    merge_size: int
    patches: object = field(compare=False, repr=False)
    digest: bytes = b""

    @property
    def merged_hw(self) -> tuple[int, int]:
        return self.grid[1] // self.merge_size, self.grid[2] // self.merge_size

    @property
    def num_tokens(self) -> int:
        h, w = self.merged_hw
        return self.grid[0] * h * w

    @property
    def end(self) -> int:
        return self.offset + self.num_tokens


@dataclass(frozen=True)
class ThinkingBudget:
    """Bound on reasoning tokens, enforced in the decode loop.

    While the request is "thinking" (started inside a <think> block, until `think_end_id` is produced), the engine
    counts generated tokens. When `max_thinking_tokens` is reached it forces `wind_down_ids` followed by
    `think_end_id` (the graceful close), then sampling resumes for the answer.
    """

    max_thinking_tokens: int
    think_end_id: int
    wind_down_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampler controls, by their vLLM names and with vLLM's defaults."""

    n: int = 1
    max_tokens: int | None = 16
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: disabled
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] | None = None
    seed: int | None = None
    stop: tuple[str, ...] | list[str] | None = None  # text level: applied by the processor, not the engine
    stop_token_ids: tuple[int, ...] | list[int] | None = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    logprobs: int | None = None  # number of top logprobs per generated token (0 = only the sampled one)
    prompt_logprobs: int | None = None
    skip_special_tokens: bool = True
    thinking_budget: ThinkingBudget | None = None
    grammar: Grammar | None = field(default=None, compare=False, hash=False)  # one matcher per sample
    # Who the request is for (the API key): admission shares the batch fairly between tenants. Not a sampler control.
    tenant: str | None = field(default=None, compare=False)

    def validate(self, vocab_size: int | None = None) -> None:
        """Raise EngineError naming the parameter when a value is out of range."""
        if not isinstance(self.n, int) or not 1 <= self.n <= 128:
            raise EngineError("n must be an integer between 1 and 128", "n")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            raise EngineError("max_tokens must be at least 1", "max_tokens")
        if self.min_tokens < 0 or (self.max_tokens is not None and self.min_tokens > self.max_tokens):
            raise EngineError("min_tokens must be between 0 and max_tokens", "min_tokens")
        if not 0.0 <= self.temperature <= 2.0:
            raise EngineError("temperature must be between 0 and 2", "temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise EngineError("top_p must be in (0, 1]", "top_p")
        if not isinstance(self.top_k, int) or self.top_k < -1:
            raise EngineError("top_k must be -1, 0 (disabled) or a positive integer", "top_k")
        if not 0.0 <= self.min_p <= 1.0:
            raise EngineError("min_p must be between 0 and 1", "min_p")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise EngineError(f"{name} must be between -2 and 2", name)
        if not 0.0 < self.repetition_penalty <= 2.0:
            raise EngineError("repetition_penalty must be in (0, 2]", "repetition_penalty")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise EngineError("seed must be a non-negative integer", "seed")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 20:
                raise EngineError(f"{name} must be between 0 and 20", name)
        if vocab_size is not None:
            for token_id in list(self.stop_token_ids or ()) + list((self.logit_bias or {}).keys()):
                if not 0 <= int(token_id) < vocab_size:
                    raise EngineError(f"token id {token_id} is outside the vocabulary", "logit_bias")
        if self.logit_bias:
            for bias in self.logit_bias.values():
                if not -100.0 <= bias <= 100.0:
                    raise EngineError("logit_bias values must be between -100 and 100", "logit_bias")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class FinishReason(str, enum.Enum):
    STOP = "stop"  # EOS / stop token / grammar terminated (stop strings are detected above the engine)
    LENGTH = "length"  # max_tokens or context full
    ABORT = "abort"
    ERROR = "error"


# token id -> logprob, for one position; the sampled token is always present.
TokenLogprobs = dict[int, float]


@dataclass
class SequenceDelta:
    """What one sample (index `index` of n) produced in one engine step."""

    index: int
    new_token_ids: list[int]  # never the stop/eos id that ended the sample: see `stop_token_id`
    new_logprobs: list[TokenLogprobs] | None  # aligned with new_token_ids when logprobs were asked
    num_output_tokens: int  # cumulative, the stop/eos id included (the model generated it)
    num_reasoning_tokens: int  # cumulative, counted while thinking (budget accounting)
    finish_reason: FinishReason | None = None
    stop_token_id: int | None = None  # the stop/eos id that ended it (finish_reason "stop"; not in new_token_ids)
    stop_logprobs: TokenLogprobs | None = None  # logprobs of stop_token_id when logprobs were asked


@dataclass
class EngineOutput:
    """Per-request output of one engine step (only requests that changed are reported)."""

    request_id: str
    sequences: list[SequenceDelta]
    num_prompt_tokens: int
    num_cached_tokens: int = 0
    prompt_logprobs: list[TokenLogprobs | None] | None = None  # sent once, with the first output
    finished: bool = False  # True when every sample finished
    error: str | None = None
