"""Serving events -> Chat Completions bodies: the `chat.completion` object and `chat.completion.chunk` stream.

Owns the wire shapes of section 1 of api-wire-formats.md: role only in a choice's first delta, a tool call's
id/type/name only in its first fragment, contiguous indexes, one terminal finish_reason per choice, the usage
chunk with `choices: []`, `usage: null` on the other chunks when include_usage, and the usage arithmetic.
Imports serving events only. Invariant: the same events give the same message whether streamed or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwen35.api.wire import usage_cost
from qwen35.serving.events import (
    Citations,
    Finished,
    ReasoningDelta,
    ServingEvent,
    TextDelta,
    TokenLogprob,
    ToolCallArgsDelta,
    ToolCallDone,
    ToolCallStart,
    UrlCitation,
    Usage,
    WebSearchCall,
)

_FINISH = {
    "stop": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "abort": "stop",
    "error": "stop",
}


def finish_reason(reason: str) -> str:
    return _FINISH.get(reason, "stop")


def usage_dict(usage: Usage, web_search: bool = False) -> dict[str, Any]:
    """OpenAI usage: prompt includes cached, completion includes reasoning; details always present; `cost` in USD
    (as OpenRouter sends it) once the ledger priced the request; with web search on, the billed searches as
    `server_tool_use.web_search_requests` (Anthropic's shape; OpenAI's schema has no field for them)."""
    body: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    cost = usage_cost(usage)
    if cost is not None:
        body["cost"] = cost
    if web_search:
        body["server_tool_use"] = {"web_search_requests": usage.web_search_calls}
    return body


def url_citation(citation: UrlCitation, offset: int) -> dict[str, Any]:
    return {"type": "url_citation", "url_citation": {
        "start_index": citation.start_index + offset, "end_index": citation.end_index + offset,
        "url": citation.url, "title": citation.title}}


def logprob_entry(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": lp.bytes,
        "top_logprobs": [{"token": t, "logprob": v, "bytes": b} for t, _tid, v, b in lp.top_logprobs],
    }


@dataclass
class _Choice:
    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    calls: dict[int, ToolCallDone] = field(default_factory=dict)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish: str | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)
    segment_start: int = 0  # content length at the last web search: citation offsets count from here
    content_len: int = 0


class ChatAccumulator:
    """Collects events into a non-streamed `chat.completion`."""

    def __init__(self, n: int, want_logprobs: bool, web_search: bool = False) -> None:
        self._choices = [_Choice() for _ in range(n)]
        self._want_logprobs = want_logprobs
        self._web_search = web_search
        self.usage: Usage | None = None

    def add(self, event: ServingEvent) -> None:
        choice = self._choices[event.index]
        if isinstance(event, ReasoningDelta):
            choice.reasoning.append(event.text)
        elif isinstance(event, TextDelta):
            choice.content.append(event.text)
            choice.content_len += len(event.text)
            choice.logprobs.extend(logprob_entry(lp) for lp in event.logprobs)
        elif isinstance(event, WebSearchCall):
            choice.segment_start = choice.content_len
        elif isinstance(event, Citations):
            choice.annotations.extend(url_citation(c, choice.segment_start) for c in event.citations)
        elif isinstance(event, ToolCallDone):
            choice.calls[event.call_index] = event
        elif isinstance(event, Finished):
            choice.finish = finish_reason(event.reason)
            if event.usage is not None:
                self.usage = event.usage

    def body(self, completion_id: str, created: int, model: str, fingerprint: str, usage: Usage) -> dict[str, Any]:
        choices = []
        for index, choice in enumerate(self._choices):
            reasoning = "".join(choice.reasoning) or None
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(choice.content),
                "refusal": None,
                "annotations": choice.annotations,
                "reasoning_content": reasoning,
                "reasoning": reasoning,
            }
            if choice.calls:
                message["tool_calls"] = [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments_json},
                    }
                    for _, call in sorted(choice.calls.items())
                ]
                if not message["content"].strip():
                    message["content"] = None
            logprobs = {"content": choice.logprobs, "refusal": None} if self._want_logprobs else None
            choices.append(
                {"index": index, "message": message, "logprobs": logprobs, "finish_reason": choice.finish or "stop"}
            )
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage_dict(usage, self._web_search),
            "service_tier": "default",
            "system_fingerprint": fingerprint,
        }


class ChatChunker:
    """Events -> `chat.completion.chunk` dicts, enforcing the rules the SDK's stream helper relies on."""

    def __init__(
        self, completion_id: str, created: int, model: str, fingerprint: str, want_logprobs: bool, include_usage: bool,
        web_search: bool = False,
    ) -> None:
        self._web_search = web_search
        self._content_len: dict[int, int] = {}
        self._segment_start: dict[int, int] = {}
        self._base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                      "system_fingerprint": fingerprint}
        self._want_logprobs = want_logprobs
        self._include_usage = include_usage

    def chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        out = {**self._base, "choices": choices}
        if self._include_usage:
            out["usage"] = None
        return out

    def opening(self, n: int) -> list[dict[str, Any]]:
        """First chunk of every choice, in index order: the only place `role` appears."""
        return [
            self.chunk([self._choice(i, {"role": "assistant", "content": "", "refusal": None})]) for i in range(n)
        ]

    def on_event(self, event: ServingEvent) -> list[dict[str, Any]]:
        i = event.index
        if isinstance(event, ReasoningDelta):
            return [self.chunk([self._choice(i, {"reasoning_content": event.text, "reasoning": event.text})])]
        if isinstance(event, TextDelta):
            logprobs = None
            if self._want_logprobs:
                logprobs = {"content": [logprob_entry(lp) for lp in event.logprobs], "refusal": None}
            if not event.text and not event.logprobs:
                return []
            self._content_len[i] = self._content_len.get(i, 0) + len(event.text)
            return [self.chunk([self._choice(i, {"content": event.text}, logprobs)])]
        if isinstance(event, WebSearchCall):
            self._segment_start[i] = self._content_len.get(i, 0)
            return []
        if isinstance(event, Citations):
            offset = self._segment_start.get(i, 0)
            annotations = [url_citation(c, offset) for c in event.citations]
            return [self.chunk([self._choice(i, {"annotations": annotations})])] if annotations else []
        if isinstance(event, ToolCallStart):
            fragment = {"index": event.call_index, "id": event.call_id, "type": "function",
                        "function": {"name": event.name, "arguments": ""}}
            return [self.chunk([self._choice(i, {"tool_calls": [fragment]})])]
        if isinstance(event, ToolCallArgsDelta):
            fragment = {"index": event.call_index, "function": {"arguments": event.arguments_delta}}
            return [self.chunk([self._choice(i, {"tool_calls": [fragment]})])]
        if isinstance(event, Finished):
            return [self.chunk([self._choice(i, {}, None, finish_reason(event.reason))])]
        return []  # ToolCallDone: its arguments were already streamed

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return {**self._base, "choices": [], "usage": usage_dict(usage, self._web_search)}

    @staticmethod
    def _choice(
        index: int, delta: dict[str, Any], logprobs: dict[str, Any] | None = None, finish: str | None = None
    ) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
