"""The server-side web search loop of one request: which calls the server runs, their results, the next round.

Owns the per-request search state used by `serving.core.Generation`: it sorts one round's events (calls of the
`web_search` function become `WebSearchCall`s, never client tool calls; client call indices stay 0, 1, ... across
rounds), holds back the round's `Finished` while searches are pending, runs them (limits, the billing gate, the
provider), emits `WebSearchResult`s and `Citations`, and writes the tokens that continue the conversation in the
chat template's own form (`<|im_end|>`, a user turn of `<tool_response>` blocks, the next generation prompt).
Imports serving types and serving.web_search only; never the engine, api/ or platform/.
Invariants: each call the model completes gets exactly one `WebSearchResult`; `num_billed` counts only searches
that returned results; no search runs once `max_uses` calls were attempted or the gate refused one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from qwen35.serving.events import (
    Citations,
    Finished,
    ServingEvent,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallDone,
    ToolCallStart,
    WebSearchCall,
    WebSearchResult,
)
from qwen35.serving.request import WebSearchOptions
from qwen35.serving.web_search import (
    MAX_QUERY_CHARS,
    TOOL_NAME,
    SearchError,
    SourceBook,
    WebSearchService,
    failure_text,
    query_of,
)

log = logging.getLogger(__name__)
SearchGate = Callable[[], Awaitable[str | None]]
"""Asked before each search: None lets it run (its fee is held), an error code refuses it ("insufficient_credits")."""


_REFUSED = frozenset({"max_uses_exceeded", "insufficient_credits", "invalid_tool_input", "query_too_long"})


@dataclass
class _Pending:
    call_id: str
    query: str | None


class SearchLoop:
    """Search state of one request (one choice: web search requests have n == 1)."""

    def __init__(self, service: WebSearchService, options: WebSearchOptions, gate: SearchGate | None = None) -> None:
        self.service = service
        self.options = options
        self.gate = gate
        self.max_uses = service.max_uses_for(options)
        self.num_attempted = 0
        self.num_billed = 0
        self.stopped: str | None = None  # why searching stopped for good (an error code), None while it may go on
        self.book = SourceBook()
        self.held: Finished | None = None
        self._pending: list[_Pending] = []
        self._responses: list[str] = []
        self._round_calls: dict[int, int | None] = {}  # round call index -> client call index (None: a search)
        self._num_client_calls = 0
        self._round_client_calls = 0
        self._segment: list[str] = []
        self._num_refused_rounds = 0  # rounds whose every call was refused (limits): one more answer round only

    @property
    def searching(self) -> bool:
        """Whether the next round offers web_search."""
        return self.stopped is None and self.num_attempted < self.max_uses

    @property
    def should_run(self) -> bool:
        """After a round: whether its searches run (the round ended with its calls written, not cut off)."""
        return self.held is not None and bool(self._pending) and self.held.reason in ("tool_calls", "stop")

    @property
    def continues(self) -> bool:
        """After the searches ran: whether the server generates again (the round made no client tool calls)."""
        return (self.held is not None and self._round_client_calls == 0 and self.held.reason in ("tool_calls", "stop")
                and self._num_refused_rounds <= 1)

    def begin_round(self) -> None:
        self.held = None
        self._pending = []
        self._responses = []
        self._round_calls = {}
        self._round_client_calls = 0

    # -- one round's events ------------------------------------------------------------------------------------

    def sort(self, event: ServingEvent) -> list[ServingEvent]:
        """The events the client sees for one event of the round (a held `Finished` is kept in `held`)."""
        if isinstance(event, TextDelta):
            self._segment.append(event.text)
            return [event]
        if isinstance(event, ToolCallStart):
            if event.name == TOOL_NAME:
                self._round_calls[event.call_index] = None
                return []
            self._round_calls[event.call_index] = self._num_client_calls
            self._num_client_calls += 1
            self._round_client_calls += 1
            return [replace(event, call_index=self._num_client_calls - 1)]
        if isinstance(event, ToolCallArgsDelta):
            client = self._round_calls.get(event.call_index)
            return [] if client is None else [replace(event, call_index=client)]
        if isinstance(event, ToolCallDone):
            client = self._round_calls.get(event.call_index)
            if client is not None:
                return [replace(event, call_index=client)]
            pending = _Pending(event.call_id, query_of(event.arguments_json))
            self._pending.append(pending)
            return [*self._cite(event.index), WebSearchCall(event.index, event.call_id, pending.query or "",
                                                            event.arguments_json or "{}")]
        if isinstance(event, Finished):
            if self._pending:
                self.held = event
                return []
            return [*self._cite(event.index), event]
        return [event]

    def finish_held(self) -> list[ServingEvent]:
        """A round that will not continue: the held `Finished`, after results for calls that were not run."""
        held, self.held = self.held, None
        if held is None:
            return []
        if held.reason == "tool_calls" and self._round_client_calls == 0:
            held = replace(held, reason="stop")  # only searches were asked for: the client has no call to answer
        out: list[ServingEvent] = [
            WebSearchResult(held.index, p.call_id, p.query or "", error_code="unavailable",
                            error="The search was not run: the answer ended first.")
            for p in self._pending
        ]
        self._pending = []
        return [*out, *self._cite(held.index), held]

    def _cite(self, index: int) -> list[ServingEvent]:
        text, self._segment = "".join(self._segment), []
        citations = self.book.citations(text) if text and self.book.sources else ()
        return [Citations(index, citations)] if citations else []

    # -- running the searches ----------------------------------------------------------------------------------

    async def run(self, index: int) -> list[WebSearchResult]:
        """Run the round's pending searches in order (limits, gate, provider); their results, one per call."""
        results = [await self._run_one(index, p) for p in self._pending]
        self._pending = []
        if results and all(r.error_code in _REFUSED for r in results):
            self._num_refused_rounds += 1
        return results

    async def _run_one(self, index: int, pending: _Pending) -> WebSearchResult:
        query = pending.query or ""
        refusal: str | None = None
        if pending.query is None:
            refusal = "invalid_tool_input"
        elif len(query) > MAX_QUERY_CHARS:
            refusal = "query_too_long"
        elif self.stopped is not None:
            refusal = self.stopped
        elif self.num_attempted >= self.max_uses:
            refusal = "max_uses_exceeded"
        elif self.gate is not None:
            refusal = await self.gate()
            if refusal is not None:
                self.stopped = refusal
        if refusal is not None:
            self._responses.append(failure_text(refusal, ""))
            return WebSearchResult(index, pending.call_id, query, error_code=refusal, error=failure_text(refusal, ""))
        self.num_attempted += 1
        try:
            sources = await self.service.provider.search(self.service.query(self.options, query))
        except SearchError as exc:
            self._responses.append(failure_text(exc.code, exc.message))
            return WebSearchResult(index, pending.call_id, query, error_code=exc.code, error=exc.message)
        except Exception:  # noqa: BLE001 - a provider bug is a failed search for the model, never a crash
            log.exception("web search provider %s failed", self.service.provider.name)
            message = "The search provider failed."
            self._responses.append(failure_text("unavailable", message))
            return WebSearchResult(index, pending.call_id, query, error_code="unavailable", error=message)
        self.num_billed += 1
        shown_before = len(self.book.sources)
        self._responses.append(self.book.tool_response(query, sources, self.options.context_size))
        return WebSearchResult(index, pending.call_id, query, sources=tuple(self.book.sources[shown_before:]))

    def continuation(self, ids: Any, encode: Callable[[str], list[int]], thinking: bool) -> list[int]:
        """Token ids after the round's generated tokens: its end, the tool responses, the next generation prompt
        (what the chat template renders for an assistant turn with tool calls and its tool messages). Control
        tokens go in by id (`ids`: the tokenizer's SpecialIds); the texts around them are encoded plainly."""
        out = [ids.im_end, *encode("\n"), ids.im_start, *encode("user")]
        for text in self._responses:
            out += [*encode("\n"), ids.tool_response_start, *encode(f"\n{text}\n"), ids.tool_response_end]
        out += [ids.im_end, *encode("\n"), ids.im_start, *encode("assistant\n"), ids.think_start]
        # as the template's text tokenizes: "<think>\n" opens reasoning, "<think>\n\n</think>\n\n" skips it
        out += encode("\n") if thinking else [*encode("\n\n"), ids.think_end, *encode("\n\n")]
        return [int(t) for t in out]
