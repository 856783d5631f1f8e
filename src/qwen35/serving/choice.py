"""One choice (sample) of a generation: engine token deltas -> neutral serving events.

Owns the per-choice text pipeline: incremental detokenizer -> stop-string matcher -> output parser (reasoning,
answer, Qwen XML tool calls) -> `ServingEvent`s, plus the per-choice counts (output and reasoning tokens) and the
answer logprobs. Imports processor (text tools), engine.request data types and serving value types; never the
engine itself. The control tokens (`<think>`, `</think>`, `<tool_call>`, `</tool_call>`) travel by id
(`ChoiceConfig.control_ids`): the detokenizer never skips them and the parser recognises them, whatever the
checkpoint's special flags.
Invariants: tokens are processed one at a time so counts and logprobs are exact; a choice emits exactly one
`Finished`, after which it ignores further deltas; stop strings never reach answer text, nor does the `</think>`
that closes reasoning; reasoning tokens are those generated while the parser is inside a think block (the
closing `</think>` included).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from qwen35.engine.request import FinishReason, SequenceDelta
from qwen35.processor.detokenizer import IncrementalDetokenizer, TokenBytes
from qwen35.processor.output_parser import (
    AnswerText,
    OutputParser,
    ParsedEvent,
    ReasoningText,
    ToolCallArgs,
    ToolCallBegin,
    ToolCallEnd,
)
from qwen35.processor.stop import StopMatcher
from qwen35.serving.events import (
    Finished,
    FinishKind,
    ReasoningDelta,
    ServingEvent,
    TextDelta,
    TokenLogprob,
    ToolCallArgsDelta,
    ToolCallDone,
    ToolCallStart,
)
from qwen35.serving.request import ToolSpec

_ENGINE_FINISH: Mapping[FinishReason, FinishKind] = {
    FinishReason.STOP: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.ABORT: "abort",
    FinishReason.ERROR: "error",
}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class _HasTokenBytes(Protocol):
    def token_bytes(self, token_id: int) -> bytes: ...


class TokenText:
    """Token id -> (display string, raw bytes), cached: logprob rendering asks for the same ids repeatedly."""

    def __init__(self, tokenizer: _HasTokenBytes) -> None:
        self._tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def __call__(self, token_id: int) -> tuple[str, list[int]]:
        hit = self._cache.get(token_id)
        if hit is None:
            raw = bytes(self._tokenizer.token_bytes(token_id))
            hit = (raw.decode("utf-8", errors="replace"), list(raw))
            if len(self._cache) < 65536:
                self._cache[token_id] = hit
        return hit

    def logprob(self, token_id: int, candidates: Mapping[int, float], num_top: int) -> TokenLogprob:
        """The sampled token with its logprob and the `num_top` most likely alternatives."""
        text, raw = self(token_id)
        ranked = sorted(candidates.items(), key=lambda item: -item[1])[:num_top]
        top = [(self(tid)[0], tid, float(lp), self(tid)[1]) for tid, lp in ranked]
        logprob = float(candidates.get(token_id, float("-inf")))
        return TokenLogprob(token=text, token_id=token_id, logprob=logprob, bytes=raw, top_logprobs=top)


@dataclass(frozen=True)
class ChoiceConfig:
    """What every choice of one request shares."""

    stop: tuple[str, ...]
    include_stop_str_in_output: bool
    in_reasoning: bool  # prompt opened a <think> block
    think_end_id: int | None
    raw_output: bool
    skip_special_tokens: bool
    tools: tuple[ToolSpec, ...]  # parsed tool-call arguments are typed from their schemas
    num_logprobs: int | None
    parallel_tool_calls: bool
    # id -> tag of <think>, </think>, <tool_call>, </tool_call> (SpecialIds.control_tags): never skipped as
    # special, recognised by id by the parser
    control_ids: Mapping[int, str] = field(default_factory=dict)


class ChoiceDecoder:
    """Turns one sample's token deltas into events; `finished` once it emitted its `Finished`."""

    def __init__(
        self,
        index: int,
        config: ChoiceConfig,
        tokenizer: TokenBytes,
        token_text: TokenText,
        make_parser: Callable[[], OutputParser] | None,
    ) -> None:
        self.index = index
        self.finished = False
        self.num_output_tokens = 0
        self.num_reasoning_tokens = 0
        self._config = config
        self._token_text = token_text
        self._detok = IncrementalDetokenizer(
            tokenizer, skip_special_tokens=config.skip_special_tokens, keep_ids=config.control_ids
        )
        self._stop = StopMatcher(list(config.stop)) if config.stop else None
        self._parser = make_parser() if make_parser is not None and not config.raw_output else None
        self._parser_reasoning = self._parser is not None and self._parser.in_reasoning
        self._thinking = self._parser_reasoning  # raw output (no parser) has no reasoning
        self._pending_logprobs: list[TokenLogprob] = []
        self._answer_started = False
        self._calls: list[_OpenCall] = []
        self._num_calls_done = 0

    # -- engine side -------------------------------------------------------------------------------------------

    def feed(self, delta: SequenceDelta) -> list[ServingEvent]:
        """Consume one engine delta; ends the choice itself on a stop string or a finish reason."""
        if self.finished:
            return []
        events: list[ServingEvent] = []
        token_ids = delta.new_token_ids
        stop_id = delta.stop_token_id
        if stop_id is not None and token_ids and token_ids[-1] == stop_id:
            # Defensive only: the engine contract (SequenceDelta.stop_token_id) keeps the stop id out of
            # new_token_ids. Were it there, it would be counted twice and rendered as text.
            token_ids = token_ids[:-1]
        for position, token_id in enumerate(token_ids):
            self.num_output_tokens += 1
            if self._thinking:
                self.num_reasoning_tokens += 1
            elif self._config.num_logprobs is not None and delta.new_logprobs is not None:
                candidates = delta.new_logprobs[position] if position < len(delta.new_logprobs) else {}
                self._pending_logprobs.append(
                    self._token_text.logprob(token_id, candidates, self._config.num_logprobs)
                )
            events.extend(self._push_text(self._detok.add([token_id]), token_id=token_id))
            self._track_reasoning(token_id)
            if self.finished:
                return events
        if stop_id is not None:
            self.num_output_tokens += 1  # the model generated it; billed like every peer does (and the engine)
            self.num_reasoning_tokens += 1 if self._thinking else 0
        if delta.finish_reason is not None:
            events.extend(self.finish(_ENGINE_FINISH[delta.finish_reason]))
        return events

    def finish(self, reason: FinishKind, error: str | None = None) -> list[ServingEvent]:
        """Flush held-back text and end the choice (tool calls turn a natural stop into "tool_calls")."""
        if self.finished:
            return []
        events: list[ServingEvent] = []
        if reason in ("stop", "length"):
            events.extend(self._push_text(self._detok.flush(), final=True))
            if self.finished:  # a stop string matched in the flushed tail
                return events
        if reason == "stop" and self._num_calls_done:
            reason = "tool_calls"
        self.finished = True
        events.append(Finished(index=self.index, reason=reason, error=error))
        return events

    def _track_reasoning(self, token_id: int) -> None:
        """Follow the parser into and out of think blocks (by text too: a model may spell `</think>` out); the
        `</think>` id ends reasoning at once, even while a stop-string prefix holds its text back."""
        if self._parser is not None and self._parser.in_reasoning != self._parser_reasoning:
            self._parser_reasoning = self._thinking = self._parser.in_reasoning
            if self._thinking:
                self._pending_logprobs.clear()  # the model opened a think block: its tokens are not answer tokens
        if token_id == self._config.think_end_id:
            self._thinking = False

    # -- text side ---------------------------------------------------------------------------------------------

    def _push_text(self, text: str, final: bool = False, token_id: int | None = None) -> list[ServingEvent]:
        matched: str | None = None
        if self._stop is not None:
            text, matched = self._stop.feed(text)
            # what the matcher releases no longer lines up with one token; the control tags are in the text
            # anyway (the detokenizer keeps them by id), so the parser reads them from it
            token_id = None
            if final and matched is None:
                text += self._stop.flush()
        if matched is not None and self._config.include_stop_str_in_output:
            text += matched
        events = self._parse(text, final=final or matched is not None, token_id=token_id)
        if matched is not None and not self.finished:
            self.finished = True
            events.append(Finished(index=self.index, reason="stop_sequence", stop_sequence=matched))
        return events

    def _parse(self, text: str, final: bool, token_id: int | None = None) -> list[ServingEvent]:
        if self._parser is None:
            return self._answer(text) if text else []
        if token_id is not None:
            items = self._parser.feed_token(token_id, text)
        else:
            items = self._parser.feed(text) if text else []
        if final:
            items.extend(self._parser.finish())
        events: list[ServingEvent] = []
        for item in items:
            events.extend(self._convert(item))
            if self.finished:
                break
        return events

    def _convert(self, item: ParsedEvent) -> list[ServingEvent]:
        if isinstance(item, ReasoningText):
            return [ReasoningDelta(index=self.index, text=item.text)] if item.text else []
        if isinstance(item, AnswerText):
            return self._answer(item.text)
        if isinstance(item, ToolCallBegin):
            self._pending_logprobs.clear()  # markup tokens are not visible answer tokens
            call = _OpenCall(call_index=len(self._calls), call_id=new_call_id(), name=item.name)
            self._calls.append(call)
            return [ToolCallStart(self.index, call.call_index, call.call_id, call.name)]
        if isinstance(item, ToolCallArgs):
            call = self._calls[-1]
            call.pieces.append(item.delta)
            return [ToolCallArgsDelta(self.index, call.call_index, item.delta)] if item.delta else []
        if isinstance(item, ToolCallEnd):
            call = self._calls[-1]
            self._num_calls_done += 1
            arguments_json = item.arguments_json or "".join(call.pieces)
            events: list[ServingEvent] = [
                ToolCallDone(self.index, call.call_index, call.call_id, call.name, dict(item.arguments), arguments_json)
            ]
            if not self._config.parallel_tool_calls:
                # one call per turn was asked: end the choice here and let the core abort the sample
                self.finished = True
                events.append(Finished(index=self.index, reason="tool_calls"))
            return events
        return []

    def _answer(self, text: str) -> list[ServingEvent]:
        logprobs = self._take_logprobs()
        if not text and not logprobs:
            return []
        self._answer_started = self._answer_started or bool(text)
        return [TextDelta(index=self.index, text=text, logprobs=logprobs)]

    def _take_logprobs(self) -> list[TokenLogprob]:
        pending = self._pending_logprobs
        if not self._answer_started and self._parser is not None and self._parser.drops_separator:
            # the separator after </think> ("\n\n") is stripped by the parser: not a visible answer token
            while pending and not pending[0].token.strip():
                pending.pop(0)
        self._pending_logprobs = []
        return pending


@dataclass
class _OpenCall:
    call_index: int
    call_id: str
    name: str
    pieces: list[str] = field(default_factory=list)
