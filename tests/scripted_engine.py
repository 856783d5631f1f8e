"""A scripted stand-in for the AsyncEngine, for protocol-shape tests of every API family (a test double: it lives in
tests/ and is imported as `from scripted_engine import ScriptedEngine`, like `scripted_app`).

Owns `ScriptedEngine`: it answers each request with token ids chosen by the test (per sample), honouring the parts
of SamplingParams that shape a stream (max_tokens -> "length", stop_token_ids -> "stop", n, logprobs, prompt
logprobs, the thinking budget's forced close) and recording aborts. Imports engine.request data types only; no
model runs. Invariants: it follows the AsyncEngine contract (input validated at its door, errors raised on the first
iteration, last output has finished=True, closing early counts as an abort) and the stop-token convention of
`qwen35.engine.request` (the stop id that ended a sample is in `stop_token_id`, never in `new_token_ids`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from qwen35.engine.request import (
    ContextLengthError,
    EngineOutput,
    EngineOverloadedError,
    FinishReason,
    SamplingParams,
    SequenceDelta,
)

Script = Callable[[str, list[int], SamplingParams], Sequence[Sequence[int]]]


@dataclass
class SubmittedRequest:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams


class ScriptedEngine:
    """Yields scripted tokens `tokens_per_step` at a time; `script(request_id, prompt, params)` returns one token
    list per sample (the last list repeats when n is larger)."""

    def __init__(
        self,
        script: Script | Sequence[Sequence[int]],
        *,
        vocab_size: int = 248320,
        max_model_len: int = 4096,
        tokens_per_step: int = 1,
        num_cached_tokens: int = 0,
        step_delay_s: float = 0.0,
        overloaded: bool = False,
        fail_after_steps: int | None = None,
    ) -> None:
        self.set_script(script)
        self.vocab_size = vocab_size
        self.max_model_len = max_model_len
        self.tokens_per_step = max(1, tokens_per_step)
        self.num_cached_tokens = num_cached_tokens
        self.step_delay_s = step_delay_s
        self.overloaded = overloaded
        self.fail_after_steps = fail_after_steps
        self.submitted: list[SubmittedRequest] = []
        self._running: dict[str, list[_Sample]] = {}
        self.aborted: list[str] = []
        self.finished: list[str] = []
        self.finished_samples: list[tuple[str, int]] = []

    def set_script(self, script: Script | Sequence[Sequence[int]]) -> None:
        """Answer the following requests with `script` (a callable or fixed token lists, one per sample)."""
        self._script = script if callable(script) else (lambda _rid, _p, _sp, fixed=script: fixed)

    async def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams, mm_inputs: object | None = None
    ) -> AsyncIterator[EngineOutput]:
        params.validate(self.vocab_size)
        if self.overloaded:
            raise EngineOverloadedError("queue full")
        if len(prompt_token_ids) >= self.max_model_len:
            raise ContextLengthError(f"prompt of {len(prompt_token_ids)} tokens exceeds {self.max_model_len}")
        self.submitted.append(SubmittedRequest(request_id, list(prompt_token_ids), params))
        scripts = [list(s) for s in self._script(request_id, list(prompt_token_ids), params)] or [[]]
        samples = [_Sample(i, scripts[min(i, len(scripts) - 1)], params) for i in range(params.n)]
        self._running[request_id] = samples
        prompt_logprobs = None
        if params.prompt_logprobs is not None:
            prompt_logprobs = [None] + [_fake_logprobs(t, params.prompt_logprobs, self.vocab_size) for t in prompt_token_ids[1:]]
        done = False
        steps = 0
        try:
            while not done:
                if self.step_delay_s:
                    await asyncio.sleep(self.step_delay_s)
                else:
                    await asyncio.sleep(0)
                steps += 1
                if self.fail_after_steps is not None and steps > self.fail_after_steps:
                    yield EngineOutput(request_id, [], len(prompt_token_ids), self.num_cached_tokens, finished=True,
                                       error="scripted failure")
                    done = True
                    return
                deltas = [d for d in (s.step(self.tokens_per_step, self.vocab_size) for s in samples) if d is not None]
                done = all(s.finished for s in samples)
                yield EngineOutput(
                    request_id, deltas, len(prompt_token_ids), self.num_cached_tokens,
                    prompt_logprobs=prompt_logprobs if steps == 1 else None, finished=done,
                )
        finally:
            self._running.pop(request_id, None)
            if done:
                self.finished.append(request_id)
            else:
                self.aborted.append(request_id)

    async def abort(self, request_id: str) -> None:
        if request_id not in self.aborted and request_id not in self.finished:
            self.aborted.append(request_id)

    def finish_sample(self, request_id: str, index: int) -> None:
        self.finished_samples.append((request_id, index))
        for sample in self._running.get(request_id, ()):
            if sample.index == index:
                sample.finished = True

    def shutdown(self) -> None:
        return None


class _Sample:
    def __init__(self, index: int, tokens: list[int], params: SamplingParams) -> None:
        self.index = index
        self.params = params
        self.finished = False
        self._queue = list(tokens)
        self._num_output = 0
        self._num_reasoning = 0
        budget = params.thinking_budget
        self._thinking = budget is not None
        self._forced: list[int] = []

    def step(self, count: int, vocab_size: int) -> SequenceDelta | None:
        if self.finished:
            return None
        params = self.params
        new: list[int] = []
        finish: FinishReason | None = None
        stop_id: int | None = None
        stop_ids = set(params.stop_token_ids or ())
        while len(new) < count:
            if params.max_tokens is not None and self._num_output >= params.max_tokens:
                finish = FinishReason.LENGTH
                break
            budget = params.thinking_budget
            if self._thinking and budget is not None and not self._forced and self._num_reasoning >= budget.max_thinking_tokens:
                self._forced = [*budget.wind_down_ids, budget.think_end_id]
                # the model's own remaining reasoning is skipped up to (and including) its </think>
                if budget.think_end_id in self._queue:
                    del self._queue[: self._queue.index(budget.think_end_id) + 1]
            if self._forced:
                token = self._forced.pop(0)
            elif self._queue:
                token = self._queue.pop(0)
            else:
                finish = FinishReason.STOP
                break
            if token in stop_ids and not params.ignore_eos and not self._forced:
                finish, stop_id = FinishReason.STOP, token  # reported apart, never a new token (the convention)
                self._num_output += 1
                if self._thinking:  # counted like any generated token, as the engine does
                    self._num_reasoning += 1
                break
            new.append(token)
            self._num_output += 1
            if self._thinking:
                self._num_reasoning += 1
                if budget is not None and token == budget.think_end_id:
                    self._thinking = False
        if finish is None and params.max_tokens is not None and self._num_output >= params.max_tokens:
            finish = FinishReason.LENGTH
        self.finished = finish is not None
        logprobs = stop_logprobs = None
        if params.logprobs is not None:
            logprobs = [_fake_logprobs(t, params.logprobs, vocab_size) for t in new]
            if stop_id is not None:
                stop_logprobs = _fake_logprobs(stop_id, params.logprobs, vocab_size)
        return SequenceDelta(self.index, new, logprobs, self._num_output, self._num_reasoning, finish, stop_id,
                             stop_logprobs)


def _fake_logprobs(token: int, num_top: int, vocab_size: int) -> dict[int, float]:
    """The sampled token at -0.25 and `num_top` neighbours below it (deterministic)."""
    out = {token: -0.25}
    for k in range(1, num_top + 1):
        out[(token + k) % vocab_size] = -0.25 - k
    return out
