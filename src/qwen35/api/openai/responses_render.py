"""Serving events -> OpenAI Responses: the SSE event sequence and the final Response, from one state machine.

Owns the mapping of neutral `ServingEvent`s (one choice) to output items (reasoning, message/output_text,
function_call), their stream events, status and usage. Imports `qwen35.serving.events` and the sibling Responses
types only (never another API's output).
Invariants: `sequence_number` runs 0,1,2... with no gaps over every event of the stream; item ids and call ids are
identical in `output_item.added`, `output_item.done` and the final `response.output`; each `*.done` text equals
the concatenation of its deltas; the non-stream Response is the snapshot of the same state.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qwen35.api.openai.responses_events import (
    ContentPartAddedEvent,
    ContentPartDoneEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    OutputItemAddedEvent,
    OutputItemDoneEvent,
    OutputTextAnnotationAddedEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    ReasoningSummaryPartAddedEvent,
    ReasoningSummaryPartDoneEvent,
    ReasoningSummaryTextDeltaEvent,
    ReasoningSummaryTextDoneEvent,
    ReasoningTextDeltaEvent,
    ReasoningTextDoneEvent,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    StreamEvent,
    WebSearchCallCompletedEvent,
    WebSearchCallInProgressEvent,
    WebSearchCallSearchingEvent,
)
from qwen35.api.openai.responses_types import (
    FunctionCallOutput,
    IncompleteDetails,
    InputTokensDetails,
    Logprob,
    OutputItem,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    ReasoningOutput,
    ReasoningTextPart,
    Response,
    ResponseErrorInfo,
    ResponseUsage,
    ServerToolUse,
    SummaryTextPart,
    TopLogprob,
    WebSearchAction,
    WebSearchCallOutput,
    WebSearchSource,
)
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
    Usage,
    WebSearchCall,
    WebSearchResult,
)


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def responses_usage(usage: Usage, web_search: bool = False) -> ResponseUsage:
    return ResponseUsage(
        server_tool_use=ServerToolUse(web_search_requests=usage.web_search_calls) if web_search else None,
        input_tokens=usage.input_tokens,
        input_tokens_details=InputTokensDetails(
            cached_tokens=usage.cached_input_tokens, cache_write_tokens=usage.cache_write_tokens
        ),
        output_tokens=usage.output_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=usage.reasoning_tokens),
        total_tokens=usage.input_tokens + usage.output_tokens,
        cost=usage_cost(usage),
    )


def wire_logprobs(logprobs: list[TokenLogprob]) -> list[Logprob]:
    return [
        Logprob(
            token=lp.token,
            logprob=lp.logprob,
            bytes=list(lp.bytes),
            top_logprobs=[TopLogprob(token=tok, logprob=value, bytes=list(raw)) for tok, _, value, raw in lp.top_logprobs],
        )
        for lp in logprobs
    ]


@dataclass
class _Open:
    kind: str  # "reasoning" | "message" | "function_call"
    output_index: int
    item_id: str
    text: list[str] = field(default_factory=list)
    logprobs: list[Logprob] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    annotations: list[dict[str, object]] = field(default_factory=list)


class ResponseRenderer:
    """Feeds on one choice's serving events; numbers the stream events and keeps the Response snapshot.

    `base` is the in-progress Response echoing the request (id, model, tools, ...); its output must be empty.
    `include_logprobs` fills `logprobs` on text deltas; `summarize` also reports reasoning as a summary part
    (the text is the raw reasoning: a 4B model has no separate summariser).
    """

    def __init__(
        self,
        base: Response,
        include_logprobs: bool = False,
        summarize: bool = False,
        id_factory: Callable[[str], str] = new_item_id,
        web_search: bool = False,
        include_sources: bool = False,
    ) -> None:
        self._web_search = web_search  # usage reports server_tool_use
        self._include_sources = include_sources  # web_search_call.action.sources was asked for
        self._searches: dict[str, tuple[int, str, str]] = {}  # call id -> (output index, item id, query)
        self._response = base.model_copy(update={"status": "in_progress", "output": [], "usage": None})
        self._include_logprobs = include_logprobs
        self._summarize = summarize
        self._new_id = id_factory
        self._seq = 0
        self._output: list[OutputItem] = []
        self._open: _Open | None = None
        self._pending_ws = ""
        self._pending_logprobs: list[TokenLogprob] = []
        self.finished = False

    @property
    def response_id(self) -> str:
        return self._response.id

    def _next(self) -> int:
        number, self._seq = self._seq, self._seq + 1
        return number

    # ---- stream side ---------------------------------------------------------------------------------------

    def start(self) -> list[StreamEvent]:
        snapshot = self.response()
        return [
            ResponseCreatedEvent(sequence_number=self._next(), response=snapshot),
            ResponseInProgressEvent(sequence_number=self._next(), response=snapshot),
        ]

    def feed(self, event: ServingEvent) -> list[StreamEvent]:
        if self.finished:
            return []
        if isinstance(event, ReasoningDelta):
            return self._on_reasoning(event.text)
        if isinstance(event, TextDelta):
            return self._on_text(event.text, event.logprobs)
        if isinstance(event, ToolCallStart):
            return self._on_tool_start(event.call_id, event.name)
        if isinstance(event, ToolCallArgsDelta):
            if self._open is None or self._open.kind != "function_call" or not event.arguments_delta:
                return []
            self._open.text.append(event.arguments_delta)
            return [self._args_delta(event.arguments_delta)]
        if isinstance(event, ToolCallDone):
            return self._on_tool_done(event)
        if isinstance(event, WebSearchCall):
            return self._on_search(event)
        if isinstance(event, WebSearchResult):
            return self._on_search_result(event)
        if isinstance(event, Citations):
            return self._on_citations(event)
        if isinstance(event, Finished):
            return self._on_finished(event)
        return []

    def _on_search(self, event: WebSearchCall) -> list[StreamEvent]:
        out = self._close("completed")
        self._pending_ws = ""
        index, item_id = len(self._output), self._new_id("ws")
        self._searches[event.call_id] = (index, item_id, event.query)
        item = WebSearchCallOutput(id=item_id, status="in_progress", action=WebSearchAction(query=event.query))
        self._output.append(item)
        where = {"item_id": item_id, "output_index": index}
        out.append(OutputItemAddedEvent(sequence_number=self._next(), output_index=index, item=item))
        out.append(WebSearchCallInProgressEvent(sequence_number=self._next(), **where))
        out.append(WebSearchCallSearchingEvent(sequence_number=self._next(), **where))
        return out

    def _on_search_result(self, event: WebSearchResult) -> list[StreamEvent]:
        found = self._searches.get(event.call_id)
        if found is None:
            return []
        index, item_id, query = found
        sources = [WebSearchSource(url=s.url) for s in event.sources] if self._include_sources else None
        item = WebSearchCallOutput(
            id=item_id, status="failed" if event.error_code else "completed",
            action=WebSearchAction(query=query, queries=[query], sources=sources),
        )
        self._output[index] = item
        where = {"item_id": item_id, "output_index": index}
        return [WebSearchCallCompletedEvent(sequence_number=self._next(), **where),
                OutputItemDoneEvent(sequence_number=self._next(), output_index=index, item=item)]

    def _on_citations(self, event: Citations) -> list[StreamEvent]:
        open_ = self._open
        if open_ is None or open_.kind != "message":
            return []
        out: list[StreamEvent] = []
        for citation in event.citations:
            annotation: dict[str, object] = {"type": "url_citation", "start_index": citation.start_index,
                                             "end_index": citation.end_index, "url": citation.url,
                                             "title": citation.title}
            open_.annotations.append(annotation)
            out.append(OutputTextAnnotationAddedEvent(
                sequence_number=self._next(), item_id=open_.item_id, output_index=open_.output_index,
                content_index=0, annotation_index=len(open_.annotations) - 1, annotation=annotation,
            ))
        return out

    def _args_delta(self, delta: str) -> FunctionCallArgumentsDeltaEvent:
        assert self._open is not None
        return FunctionCallArgumentsDeltaEvent(
            sequence_number=self._next(), item_id=self._open.item_id, output_index=self._open.output_index, delta=delta
        )

    def _add_item(self, open_: _Open, item: OutputItem) -> OutputItemAddedEvent:
        self._open = open_
        self._output.append(item)
        return OutputItemAddedEvent(sequence_number=self._next(), output_index=open_.output_index, item=item)

    def _on_reasoning(self, text: str) -> list[StreamEvent]:
        if not text:
            return []
        out: list[StreamEvent] = []
        if self._open is None or self._open.kind != "reasoning":
            out.extend(self._close("completed"))
            open_ = _Open("reasoning", len(self._output), self._new_id("rs"))
            out.append(self._add_item(open_, ReasoningOutput(id=open_.item_id, status="in_progress")))
            out.append(self._part_added(ReasoningTextPart(text="")))
        assert self._open is not None
        self._open.text.append(text)
        out.append(
            ReasoningTextDeltaEvent(
                sequence_number=self._next(),
                item_id=self._open.item_id,
                output_index=self._open.output_index,
                content_index=0,
                delta=text,
            )
        )
        return out

    def _part_added(self, part: OutputText | ReasoningTextPart) -> ContentPartAddedEvent:
        assert self._open is not None
        return ContentPartAddedEvent(
            sequence_number=self._next(),
            item_id=self._open.item_id,
            output_index=self._open.output_index,
            content_index=0,
            part=part,
        )

    def _on_text(self, text: str, logprobs: list[TokenLogprob], final: bool = False) -> list[StreamEvent]:
        # Logprobs of tokens that produced no text yet (a split UTF-8 character) ride on the next text delta.
        logprobs = self._pending_logprobs + list(logprobs)
        self._pending_logprobs = []
        if not text:
            self._pending_logprobs = logprobs
            return []
        out: list[StreamEvent] = []
        if self._open is None or self._open.kind != "message":
            # Whitespace between reasoning and a tool call is template glue: open a message only for real text
            # (or when the answer ends as whitespace only).
            if not final and not (self._pending_ws + text).strip():
                self._pending_ws += text
                self._pending_logprobs = logprobs
                return []
            out.extend(self._close("completed"))
            text = self._pending_ws + text
            self._pending_ws = ""
            open_ = _Open("message", len(self._output), self._new_id("msg"))
            out.append(self._add_item(open_, OutputMessage(id=open_.item_id, status="in_progress", content=[])))
            out.append(self._part_added(OutputText(text="")))
        assert self._open is not None
        wire = wire_logprobs(logprobs) if self._include_logprobs else []
        self._open.text.append(text)
        self._open.logprobs.extend(wire)
        out.append(
            OutputTextDeltaEvent(
                sequence_number=self._next(),
                item_id=self._open.item_id,
                output_index=self._open.output_index,
                content_index=0,
                delta=text,
                logprobs=wire,
            )
        )
        return out

    def _on_tool_start(self, call_id: str, name: str) -> list[StreamEvent]:
        out = self._close("completed")
        self._pending_ws = ""  # glue before a tool call, not an answer
        open_ = _Open("function_call", len(self._output), self._new_id("fc"), call_id=call_id, name=name)
        item = FunctionCallOutput(id=open_.item_id, call_id=call_id, name=name, arguments="", status="in_progress")
        out.append(self._add_item(open_, item))
        return out

    def _on_tool_done(self, event: ToolCallDone) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._open is None or self._open.kind != "function_call" or self._open.call_id != event.call_id:
            out.extend(self._on_tool_start(event.call_id, event.name))
        assert self._open is not None
        if not self._open.text and event.arguments_json:
            self._open.text.append(event.arguments_json)
            out.append(self._args_delta(event.arguments_json))
        out.extend(self._close("completed"))
        return out

    def _close(self, status: str) -> list[StreamEvent]:
        """Finish the open item: its done events, then `output_item.done`; a no-op when none is open."""
        open_, self._open = self._open, None
        if open_ is None:
            return []
        seq = self._next
        where = {"item_id": open_.item_id, "output_index": open_.output_index}
        text = "".join(open_.text)
        out: list[StreamEvent] = []
        item: OutputItem
        if open_.kind == "reasoning":
            part = ReasoningTextPart(text=text)
            out.append(ReasoningTextDoneEvent(sequence_number=seq(), content_index=0, text=text, **where))
            out.append(ContentPartDoneEvent(sequence_number=seq(), content_index=0, part=part, **where))
            summary: list[SummaryTextPart] = []
            if self._summarize:
                empty, full = SummaryTextPart(text=""), SummaryTextPart(text=text)
                out.append(ReasoningSummaryPartAddedEvent(sequence_number=seq(), summary_index=0, part=empty, **where))
                out.append(ReasoningSummaryTextDeltaEvent(sequence_number=seq(), summary_index=0, delta=text, **where))
                out.append(ReasoningSummaryTextDoneEvent(sequence_number=seq(), summary_index=0, text=text, **where))
                out.append(ReasoningSummaryPartDoneEvent(sequence_number=seq(), summary_index=0, part=full, **where))
                summary = [full]
            item = ReasoningOutput(id=open_.item_id, summary=summary, content=[part], status=status)  # type: ignore[arg-type]
        elif open_.kind == "message":
            part_text = OutputText(text=text, logprobs=open_.logprobs, annotations=list(open_.annotations))
            out.append(
                OutputTextDoneEvent(
                    sequence_number=seq(), content_index=0, text=text, logprobs=open_.logprobs, **where
                )
            )
            out.append(ContentPartDoneEvent(sequence_number=seq(), content_index=0, part=part_text, **where))
            item = OutputMessage(id=open_.item_id, status=status, content=[part_text])  # type: ignore[arg-type]
        else:
            out.append(
                FunctionCallArgumentsDoneEvent(sequence_number=seq(), name=open_.name, arguments=text, **where)
            )
            item = FunctionCallOutput(
                id=open_.item_id, call_id=open_.call_id, name=open_.name, arguments=text, status=status  # type: ignore[arg-type]
            )
        self._output[open_.output_index] = item
        out.append(OutputItemDoneEvent(sequence_number=seq(), output_index=open_.output_index, item=item))
        return out

    def _on_finished(self, event: Finished) -> list[StreamEvent]:
        truncated = event.reason == "length"
        if event.reason == "error":
            return self.fail(event.error or "generation failed")
        pending, self._pending_ws = self._pending_ws, ""
        out = self._on_text(pending, [], final=True) if pending else []  # a whitespace-only answer is the answer
        out.extend(self._close("incomplete" if truncated else "completed"))
        self.finished = True
        now = int(time.time())
        update: dict[str, object] = {"output": list(self._output)}
        if event.usage is not None:
            update["usage"] = responses_usage(event.usage, self._web_search)
        if truncated:
            update.update(status="incomplete", incomplete_details=IncompleteDetails(reason="max_output_tokens"))
            self._response = self._response.model_copy(update=update)
            out.append(ResponseIncompleteEvent(sequence_number=self._next(), response=self.response()))
        else:
            update.update(status="completed", completed_at=now)
            self._response = self._response.model_copy(update=update)
            out.append(ResponseCompletedEvent(sequence_number=self._next(), response=self.response()))
        return out

    def fail(self, message: str, code: str = "server_error") -> list[StreamEvent]:
        """End the stream with `response.failed` (generation broke after the stream began)."""
        self.finished = True
        self._open = None
        self._response = self._response.model_copy(
            update={"status": "failed", "error": ResponseErrorInfo(code=code, message=message), "output": list(self._output)}
        )
        return [ResponseFailedEvent(sequence_number=self._next(), response=self.response())]

    # ---- non-stream side -----------------------------------------------------------------------------------

    def response(self) -> Response:
        return self._response.model_copy(update={"output": list(self._output)}, deep=True)
