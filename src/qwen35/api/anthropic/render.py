"""Serving events -> Anthropic Messages: the stream event sequence and the non-stream Message, from one state machine.

Owns the mapping of neutral `ServingEvent`s (one choice) to Anthropic content blocks, stop reasons and usage.
Imports only `qwen35.serving.events` and this package's protocol types (never another API's output).
Invariants: block indexes are 0,1,2... in start order and blocks never interleave (start, deltas, stop); a thinking
block gets exactly one `signature_delta`, right before its stop; the concatenated `input_json_delta`s of a tool_use
block equal the JSON of its final `input`; `message_delta` is emitted once, with cumulative usage, right before
`message_stop`. The non-stream Message is the snapshot of the very same state, so both shapes always agree.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from qwen35.api.anthropic.protocol_response import (
    CitationsDeltaPayload,
    ContentBlock,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJsonDeltaPayload,
    Message,
    MessageDeltaEvent,
    MessageDeltaPayload,
    MessageDeltaUsage,
    MessageStartEvent,
    MessageStopEvent,
    MessageUsage,
    OutputTokensDetails,
    ServerToolUseBlock,
    SignatureDeltaPayload,
    StopReason,
    StreamEvent,
    TextBlock,
    TextDeltaPayload,
    ThinkingBlock,
    ThinkingDeltaPayload,
    ToolUseBlock,
    WebSearchResultBlock,
    WebSearchToolResultBlock,
    WebSearchToolResultError,
)
from qwen35.api.wire import usage_cost
from qwen35.serving.events import (
    Citations,
    Finished,
    ReasoningDelta,
    ServingEvent,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
    WebSearchCall,
    WebSearchResult,
)

_SIGNATURE_DOMAIN = b"qwen35-thinking-v1\x00"


def thinking_signature(thinking: str) -> str:
    """Opaque signature of a thinking block: clients must echo it back, and it lets us tell ours from others'."""
    digest = hashlib.sha256(_SIGNATURE_DOMAIN + thinking.encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


_ERROR_CODES = frozenset({"invalid_tool_input", "unavailable", "max_uses_exceeded", "too_many_requests",
                          "query_too_long", "request_too_large"})


def server_tool_use(usage: Usage) -> dict[str, int]:
    return {"web_search_requests": usage.web_search_calls, "web_fetch_requests": 0}


def anthropic_usage(usage: Usage, web_search: bool = False) -> MessageUsage:
    """Neutral usage -> Anthropic fields: `input_tokens` counts only the uncached, unwritten part of the prompt;
    `server_tool_use` whenever the request offered web search (or searched)."""
    uncached = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
    return MessageUsage(
        input_tokens=uncached,
        output_tokens=usage.output_tokens,
        cache_read_input_tokens=usage.cached_input_tokens,
        cache_creation_input_tokens=usage.cache_write_tokens,
        output_tokens_details=OutputTokensDetails(thinking_tokens=usage.reasoning_tokens),
        server_tool_use=server_tool_use(usage) if web_search or usage.web_search_calls else None,
        cost=usage_cost(usage),
    )


def stop_reason_for(finished: Finished, made_tool_calls: bool) -> StopReason:
    if finished.reason == "length":
        return "max_tokens"
    if finished.reason == "stop_sequence":
        return "stop_sequence"
    if finished.reason == "tool_calls" or made_tool_calls:
        return "tool_use"
    return "end_turn"


@dataclass
class _OpenBlock:
    kind: str  # "thinking" | "text" | "tool_use"
    index: int
    text: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    streamed_args: list[str] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)


class GenerationFailed(Exception):
    """A `Finished(reason="error")` reached the renderer: the route turns it into an error body or `event: error`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MessageRenderer:
    """Feeds on one choice's serving events; yields Anthropic stream events and keeps the Message snapshot.

    `thinking_display="omitted"` keeps thinking blocks (with their signature) but sends no thinking text.
    """

    def __init__(
        self, message_id: str, model: str, num_prompt_tokens: int = 0, thinking_display: str | None = None,
        web_search: bool = False,
    ) -> None:
        self._web_search = web_search
        self.message_id = message_id
        self.model = model
        self._num_prompt_tokens = num_prompt_tokens
        self._omit_thinking = thinking_display == "omitted"
        self._content: list[ContentBlock] = []
        self._open: _OpenBlock | None = None
        self._pending_ws = ""  # whitespace held back until a text block proves non-empty
        self._made_tool_calls = False
        self._stop_reason: StopReason | None = None
        self._stop_sequence: str | None = None
        self._usage = MessageUsage(input_tokens=num_prompt_tokens, output_tokens=0)
        self.finished = False

    # ---- stream side ---------------------------------------------------------------------------------------

    def start(self) -> list[StreamEvent]:
        snapshot = Message(id=self.message_id, model=self.model, content=[], usage=self._usage.model_copy())
        return [MessageStartEvent(message=snapshot)]

    def feed(self, event: ServingEvent) -> list[StreamEvent]:
        if self.finished:
            return []
        if isinstance(event, ReasoningDelta):
            return self._on_reasoning(event.text)
        if isinstance(event, TextDelta):
            return self._on_text(event.text)
        if isinstance(event, ToolCallStart):
            out = self._close()
            self._pending_ws = ""  # glue before a tool call, not an answer
            self._made_tool_calls = True
            self._open = _OpenBlock("tool_use", len(self._content), call_id=event.call_id, name=event.name)
            block = ToolUseBlock(id=event.call_id, name=event.name, input={})
            self._content.append(block)
            out.append(ContentBlockStartEvent(index=self._open.index, content_block=block))
            return out
        if isinstance(event, ToolCallArgsDelta):
            if self._open is None or self._open.kind != "tool_use" or not event.arguments_delta:
                return []
            self._open.streamed_args.append(event.arguments_delta)
            return [
                ContentBlockDeltaEvent(
                    index=self._open.index, delta=InputJsonDeltaPayload(partial_json=event.arguments_delta)
                )
            ]
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
        out = self._close()
        self._pending_ws = ""
        index = len(self._content)
        block = ServerToolUseBlock(id=_server_id(event.call_id), input={})
        payload = json.dumps({"query": event.query}, ensure_ascii=False)
        self._content.append(block.model_copy(update={"input": {"query": event.query}}))
        out.append(ContentBlockStartEvent(index=index, content_block=block))
        out.append(ContentBlockDeltaEvent(index=index, delta=InputJsonDeltaPayload(partial_json=payload)))
        out.append(ContentBlockStopEvent(index=index))
        return out

    def _on_citations(self, event: Citations) -> list[StreamEvent]:
        """Sources the open text block cites, as web_search_result_location citations (one citations_delta each)."""
        block = self._open
        if block is None or block.kind != "text":
            return []
        out: list[StreamEvent] = []
        for c in event.citations:
            index = base64.b64encode(json.dumps({"url": c.url, "start": c.start_index, "end": c.end_index}).encode())
            citation = {"type": "web_search_result_location", "url": c.url, "title": c.title[:512],
                        "cited_text": c.cited_text, "encrypted_index": index.decode("ascii")}
            block.citations.append(citation)
            out.append(ContentBlockDeltaEvent(index=block.index, delta=CitationsDeltaPayload(citation=citation)))
        return out

    def _on_search_result(self, event: WebSearchResult) -> list[StreamEvent]:
        out = self._close()
        index = len(self._content)
        content: list[WebSearchResultBlock] | WebSearchToolResultError
        if event.error_code is not None:
            code = event.error_code if event.error_code in _ERROR_CODES else "unavailable"
            content = WebSearchToolResultError(error_code=code, message=event.error)  # type: ignore[arg-type]
        else:
            content = [WebSearchResultBlock(url=s.url, title=s.title, page_age=s.page_age,
                                            encrypted_content=_opaque(s.url, s.title, s.content))
                       for s in event.sources]
        block = WebSearchToolResultBlock(tool_use_id=_server_id(event.call_id), content=content)
        self._content.append(block)
        out.append(ContentBlockStartEvent(index=index, content_block=block))
        out.append(ContentBlockStopEvent(index=index))
        return out

    def _on_reasoning(self, text: str) -> list[StreamEvent]:
        if not text:
            return []
        out: list[StreamEvent] = []
        if self._open is None or self._open.kind != "thinking":
            out.extend(self._close())
            self._open = _OpenBlock("thinking", len(self._content))
            block = ThinkingBlock(thinking="", signature="")
            self._content.append(block)
            out.append(ContentBlockStartEvent(index=self._open.index, content_block=block))
        self._open.text.append(text)
        if not self._omit_thinking:
            out.append(ContentBlockDeltaEvent(index=self._open.index, delta=ThinkingDeltaPayload(thinking=text)))
        return out

    def _on_text(self, text: str, final: bool = False) -> list[StreamEvent]:
        if not text:
            return []
        out: list[StreamEvent] = []
        if self._open is None or self._open.kind != "text":
            # Whitespace between a thinking block and a tool call is template glue, not an answer: hold it back
            # and only open a text block once real text arrives (or the answer ends as whitespace only).
            if not final and not (self._pending_ws + text).strip():
                self._pending_ws += text
                return []
            out.extend(self._close())
            text = self._pending_ws + text
            self._pending_ws = ""
            self._open = _OpenBlock("text", len(self._content))
            self._content.append(TextBlock(text=""))
            out.append(ContentBlockStartEvent(index=self._open.index, content_block=TextBlock(text="")))
        self._open.text.append(text)
        out.append(ContentBlockDeltaEvent(index=self._open.index, delta=TextDeltaPayload(text=text)))
        return out

    def _on_tool_done(self, event: ToolCallDone) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._open is None or self._open.kind != "tool_use" or self._open.call_id != event.call_id:
            # A Done without its Start (a parser that only reports whole calls): open the block now.
            out.extend(self.feed(ToolCallStart(event.index, event.call_index, event.call_id, event.name)))
        assert self._open is not None
        if not self._open.streamed_args:
            payload = json.dumps(event.arguments, ensure_ascii=False)
            self._open.streamed_args.append(payload)
            out.append(
                ContentBlockDeltaEvent(index=self._open.index, delta=InputJsonDeltaPayload(partial_json=payload))
            )
        self._content[self._open.index] = ToolUseBlock(id=event.call_id, name=event.name, input=dict(event.arguments))
        out.append(ContentBlockStopEvent(index=self._open.index))
        self._open = None
        return out

    def _close(self) -> list[StreamEvent]:
        """Stop the open block (finalising its snapshot); a no-op when none is open."""
        block, self._open = self._open, None
        if block is None:
            return []
        out: list[StreamEvent] = []
        text = "".join(block.text)
        if block.kind == "thinking":
            signature = thinking_signature(text)
            self._content[block.index] = ThinkingBlock(thinking="" if self._omit_thinking else text, signature=signature)
            out.append(ContentBlockDeltaEvent(index=block.index, delta=SignatureDeltaPayload(signature=signature)))
        elif block.kind == "text":
            self._content[block.index] = TextBlock(text=text, citations=block.citations or None)
        else:  # a tool call cut off before its Done (max_tokens): keep whatever parsed as the input
            self._content[block.index] = ToolUseBlock(
                id=block.call_id, name=block.name, input=_parse_partial_args("".join(block.streamed_args))
            )
        out.append(ContentBlockStopEvent(index=block.index))
        return out

    def _on_finished(self, event: Finished) -> list[StreamEvent]:
        if event.reason == "error":
            self.finished = True
            raise GenerationFailed(event.error or "generation failed")
        # A whitespace-only answer is still the answer (every API returns the same text).
        pending, self._pending_ws = self._pending_ws, ""
        out = self._on_text(pending, final=True)
        out.extend(self._close())
        self.finished = True
        self._stop_reason = stop_reason_for(event, self._made_tool_calls)
        self._stop_sequence = event.stop_sequence if self._stop_reason == "stop_sequence" else None
        if event.usage is not None:
            self._usage = anthropic_usage(event.usage, self._web_search)
        usage = self._usage
        out.append(
            MessageDeltaEvent(
                delta=MessageDeltaPayload(stop_reason=self._stop_reason, stop_sequence=self._stop_sequence),
                usage=MessageDeltaUsage(
                    output_tokens=usage.output_tokens,
                    input_tokens=usage.input_tokens,
                    cache_creation_input_tokens=usage.cache_creation_input_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens,
                    output_tokens_details=usage.output_tokens_details,
                    server_tool_use=usage.server_tool_use,
                    cost=usage.cost,
                ),
            )
        )
        out.append(MessageStopEvent())
        return out

    # ---- non-stream side -----------------------------------------------------------------------------------

    def message(self) -> Message:
        """The Message as it stands (complete once a Finished was fed)."""
        return Message(
            id=self.message_id,
            model=self.model,
            content=list(self._content),
            stop_reason=self._stop_reason,
            stop_sequence=self._stop_sequence,
            usage=self._usage.model_copy(),
        )


def _server_id(call_id: str) -> str:
    return "srvtoolu_" + call_id.removeprefix("call_")


def _opaque(url: str, title: str, content: str) -> str:
    return base64.b64encode(json.dumps({"url": url, "title": title, "content": content}).encode()).decode("ascii")


def _parse_partial_args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
