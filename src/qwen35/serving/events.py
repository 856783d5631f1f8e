"""Protocol-neutral serving events: what every API family renders.

Owns the event value types streamed by the serving core for one generation (one choice of n), the server-run web
search's among them (`WebSearchCall`, `WebSearchResult`, `Citations`: never client tool calls). Imports nothing
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
class WebSource:
    """One web search result: what the model read (`content`) and what a client may show (title, url)."""

    title: str
    url: str
    content: str = ""
    page_age: str | None = None  # the provider's date for the page, when it gives one


@dataclass(frozen=True)
class WebSearchCall:
    """The model asked for a web search (a server tool): the server runs it now; its result follows."""

    index: int
    call_id: str
    query: str
    arguments_json: str  # the call's arguments as the model wrote them (a JSON object)


@dataclass(frozen=True)
class WebSearchResult:
    """The outcome of one `WebSearchCall` (same call_id): sources, or an error code the model was told about.

    error_code is one of Anthropic's web search error codes (the most detailed taxonomy): "unavailable",
    "too_many_requests", "invalid_tool_input", "query_too_long", "max_uses_exceeded", plus "insufficient_credits"
    (the account cannot pay for another search). Only a search with `error_code is None` is billed.
    """

    index: int
    call_id: str
    query: str
    sources: tuple[WebSource, ...] = ()
    error_code: str | None = None
    error: str | None = None  # a readable reason (never a provider key or raw provider answer)


@dataclass(frozen=True)
class UrlCitation:
    """A span of answer text [start_index, end_index) citing one source (character offsets)."""

    url: str
    title: str
    start_index: int
    end_index: int
    cited_text: str = ""  # the start of the source's text (Anthropic's web_search_result_location wants it)


@dataclass(frozen=True)
class Citations:
    """Citations of the answer text emitted since the previous web search event (offsets into that text)."""

    index: int
    citations: tuple[UrlCitation, ...]


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


ServingEvent = Union[ReasoningDelta, TextDelta, ToolCallStart, ToolCallArgsDelta, ToolCallDone, WebSearchCall,
                     WebSearchResult, Citations, Finished]
