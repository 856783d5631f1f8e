"""Offline batch API named as vLLM users expect: `LLM(model=...).generate(prompts, SamplingParams(...))`.

Composition root for offline use: builds one `EngineArgs` from the keyword arguments, then the engine and the
processor, drives the synchronous engine until every prompt is done, detokenizes incrementally and applies stop
strings (ending only the sample that matched).
Invariant: results come back in the order of the prompts, one `RequestOutput` per prompt with n outputs; a
sample's `token_ids` end with the stop/eos id that ended it (as vLLM's do), its `text` never contains it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen35.engine.args import DEFAULT_MODEL, EngineArgs
from qwen35.engine.build import build_engine
from qwen35.engine.engine import LLMEngine
from qwen35.engine.request import EngineOutput, SamplingParams, TokenLogprobs
from qwen35.processor import Processor, load_processor
from qwen35.processor.detokenizer import IncrementalDetokenizer
from qwen35.processor.stop import StopMatcher

log = logging.getLogger(__name__)


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprobs] | None
    finish_reason: str | None
    stop_reason: str | int | None = None  # the stop string or stop token id that ended it
    cumulative_logprob: float | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: list[TokenLogprobs | None] | None
    outputs: list[CompletionOutput]
    finished: bool = True
    num_cached_tokens: int = 0


@dataclass
class _SampleState:
    output: CompletionOutput
    detok: IncrementalDetokenizer
    stops: StopMatcher | None
    done: bool = False


@dataclass
class _Pending:
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    samples: dict[int, _SampleState] = field(default_factory=dict)
    prompt_logprobs: list[TokenLogprobs | None] | None = None
    num_cached_tokens: int = 0


class LLM:
    """`LLM(model=..., dummy_weights=..., dtype=..., ...)`: keyword arguments are `EngineArgs` fields (vLLM-style);
    others that vLLM accepts are ignored with a warning."""

    def __init__(self, model: str = DEFAULT_MODEL, **kwargs: Any) -> None:
        known = {f.name for f in dataclasses.fields(EngineArgs)}
        ignored = sorted(set(kwargs) - known)
        if ignored:
            log.warning("LLM: ignoring arguments this engine does not use: %s", ", ".join(ignored))
        self.engine_args = EngineArgs(model=model, **{k: v for k, v in kwargs.items() if k in known})
        self.engine: LLMEngine = build_engine(self.engine_args)
        self.processor: Processor = load_processor(self.engine.model_dir)
        self._ids = itertools.count()

    def get_tokenizer(self) -> Any:
        return self.processor.tokenizer

    def generate(
        self,
        prompts: str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        use_tqdm: bool = False,
    ) -> list[RequestOutput]:
        """Generate for each prompt (a string or a list of token ids); blocks until all are done."""
        prompt_list = _prompt_list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        params_list = (
            [sampling_params] * len(prompt_list) if isinstance(sampling_params, SamplingParams) else list(sampling_params)
        )
        if len(params_list) != len(prompt_list):
            raise ValueError("sampling_params must be one SamplingParams or one per prompt")
        pending: dict[str, _Pending] = {}
        order: list[str] = []
        try:
            for prompt, params in zip(prompt_list, params_list):
                request_id = str(next(self._ids))
                if isinstance(prompt, str):
                    text, ids = prompt, self.processor.tokenizer.encode(prompt)
                else:
                    text, ids = None, [int(t) for t in prompt]
                self.engine.add_request(request_id, ids, params)
                pending[request_id] = self._new_pending(text, ids, params)
                order.append(request_id)
            while self.engine.has_unfinished():
                for out in self.engine.step():
                    self._absorb(pending[out.request_id], out)
        finally:
            for request_id in order:  # an exception mid-way must not leave requests holding the cache
                self.engine.abort_request(request_id)
        return [self._result(request_id, pending[request_id]) for request_id in order]

    def chat(
        self,
        messages: list[dict[str, Any]] | list[list[dict[str, Any]]],
        sampling_params: SamplingParams | None = None,
        tools: list[dict[str, Any]] | None = None,
        enable_thinking: bool = True,
    ) -> list[RequestOutput]:
        """Render conversations with the checkpoint's chat template and generate."""
        conversations = [messages] if messages and isinstance(messages[0], dict) else messages
        prompts = [
            self.processor.encode_chat(conv, tools=tools, enable_thinking=enable_thinking)  # type: ignore[arg-type]
            for conv in conversations
        ]
        return self.generate(prompts, sampling_params)

    def _new_pending(self, text: str | None, ids: list[int], params: SamplingParams) -> _Pending:
        pending = _Pending(text, ids, params)
        for index in range(params.n):
            pending.samples[index] = _SampleState(
                output=CompletionOutput(index, "", [], [] if params.logprobs is not None else None, None),
                detok=IncrementalDetokenizer(self.processor.tokenizer, params.skip_special_tokens),
                stops=StopMatcher(list(params.stop)) if params.stop else None,
            )
        return pending

    def _absorb(self, pending: _Pending, out: EngineOutput) -> None:
        if out.prompt_logprobs is not None:
            pending.prompt_logprobs = out.prompt_logprobs
        pending.num_cached_tokens = out.num_cached_tokens
        for delta in out.sequences:
            state = pending.samples[delta.index]
            if state.done:
                continue
            result = state.output
            # vLLM's token_ids (and logprobs) end with the stop/eos id that ended the sample; its text never shows.
            result.token_ids.extend(delta.new_token_ids)
            if result.logprobs is not None and delta.new_logprobs:
                result.logprobs.extend(delta.new_logprobs)
            if delta.stop_token_id is not None:
                result.token_ids.append(delta.stop_token_id)
                if result.logprobs is not None and delta.stop_logprobs is not None:
                    result.logprobs.append(delta.stop_logprobs)
            text = state.detok.add(delta.new_token_ids)
            if delta.finish_reason is not None:
                text += state.detok.flush()
            if state.stops is not None:
                text, matched = state.stops.feed(text)
                if matched is not None:
                    result.text += text + (matched if pending.params.include_stop_str_in_output else "")
                    result.finish_reason, result.stop_reason = "stop", matched
                    state.done = True
                    self.engine.finish_sample(out.request_id, delta.index)
                    continue
                if delta.finish_reason is not None:
                    text += state.stops.flush()
            result.text += text
            if delta.finish_reason is not None:
                result.finish_reason = delta.finish_reason.value
                result.stop_reason = delta.stop_token_id
                state.done = True

    @staticmethod
    def _result(request_id: str, pending: _Pending) -> RequestOutput:
        outputs = []
        for index in sorted(pending.samples):
            out = pending.samples[index].output
            if out.logprobs:
                out.cumulative_logprob = sum(lp[t] for lp, t in zip(out.logprobs, out.token_ids))
            outputs.append(out)
        return RequestOutput(
            request_id=request_id, prompt=pending.prompt, prompt_token_ids=pending.prompt_token_ids,
            prompt_logprobs=pending.prompt_logprobs, outputs=outputs, num_cached_tokens=pending.num_cached_tokens,
        )


def _prompt_list(prompts: str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]]) -> list[str | list[int]]:
    """One prompt (a string or token ids) or several, as a list of strings and token-id lists."""
    if isinstance(prompts, str):
        return [prompts]
    items: list[object] = list(prompts)
    if items and isinstance(items[0], int):
        return [_token_ids(items)]
    return [p if isinstance(p, str) else _token_ids(p) for p in items]


def _token_ids(prompt: object) -> list[int]:
    if not isinstance(prompt, Sequence) or not all(isinstance(t, int) for t in prompt):
        raise TypeError("a prompt is a string or a sequence of token ids")
    return [int(t) for t in prompt]
