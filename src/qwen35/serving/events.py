"""Protocol-neutral serving events: what every API family renders.

Owns the event value types streamed by the serving core for one generation (one choice of n). Imports nothing
from api/ or platform/. Invariant: events of one choice arrive in generation order; exactly one `Finished` ends
each choice, and usage numbers are identical whichever API renders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

FinishKind = Literal["stop", "length", "tool_calls", "stop_sequence", "abort", "error"]


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its logprob and the top alternatives (already detokenized)."""

    token: str
    token_id: int
    logprob: float
    bytes: list[int]
    top_logprobs: list[tuple[str, int, float, list[int]]] = field(default_factory=list)  # (token, id, logprob, bytes)


@dataclass(frozen=True)
class ReasoningDelta:
    index: int  # choice index
    text: str


@dataclass(frozen=True)
class TextDelta:
    index: int
    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(frozen=True)
class ToolCallStart:
    """A tool call began: its name is known (arguments stream in ToolCallArgsDelta)."""

    index: int
    call_index: int  # position among this choice's tool calls
    call_id: str
    name: str


@dataclass(frozen=True)
class ToolCallArgsDelta:
    index: int
    call_index: int
    arguments_delta: str  # a piece of the JSON object text


@dataclass(frozen=True)
class ToolCallDone:
    index: int
    call_index: int
    call_id: str
    name: str
    arguments: dict[str, Any]  # typed from the tool's JSON schema
    arguments_json: str  # the exact concatenation of all arguments_delta pieces


@dataclass(frozen=True)
class Usage:
    """Token counts of one request (all choices). input includes cached; output includes reasoning."""

    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cache_write_tokens: int = 0
    web_search_calls: int = 0
    cost_usd: str | None = None  # decimal string, filled by the platform when known


@dataclass(frozen=True)
class Finished:
    index: int
    reason: FinishKind
    stop_sequence: str | None = None  # the stop string that ended it, when reason == "stop_sequence"
    usage: Usage | None = None  # per-request usage: set on the last Finished of the request
    error: str | None = None


ServingEvent = Union[ReasoningDelta, TextDelta, ToolCallStart, ToolCallArgsDelta, ToolCallDone, Finished]
