"""Anthropic response and stream-event types, typed like `anthropic.types` (2.x).

Owns the pydantic shapes the server sends: Message and its content blocks, usage, every raw stream event,
error bodies, token counts and the Anthropic `/v1/models` shapes. Imports only api.wire (shared bases).
Invariant: every model serialises with `to_wire()` to exactly the JSON the SDK's strict validation accepts
(nullable fields are sent as null, never omitted, where the SDK or the spec lists them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from qwen35.api.wire import CostedUsage, WireModel

StopReason = Literal[
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded"
]


class TextBlock(WireModel):
    type: Literal["text"] = "text"
    text: str
    citations: list[dict[str, Any]] | None = None


class ThinkingBlock(WireModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(WireModel):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class ToolUseBlock(WireModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]
    caller: dict[str, str] = Field(default_factory=lambda: {"type": "direct"})  # spec-required (client tools)


class ServerToolUseBlock(WireModel):
    """A web search the server ran for the model (`id` is `srvtoolu_...`)."""

    type: Literal["server_tool_use"] = "server_tool_use"
    id: str
    name: Literal["web_search"] = "web_search"
    input: dict[str, Any]
    caller: dict[str, str] = Field(default_factory=lambda: {"type": "direct"})


class WebSearchResultBlock(WireModel):
    type: Literal["web_search_result"] = "web_search_result"
    url: str
    title: str
    encrypted_content: str  # opaque to clients (base64 JSON of what the model read, not encrypted): echoed back
    page_age: str | None = None


class WebSearchToolResultError(WireModel):
    type: Literal["web_search_tool_result_error"] = "web_search_tool_result_error"
    error_code: Literal["invalid_tool_input", "unavailable", "max_uses_exceeded", "too_many_requests",
                        "query_too_long", "request_too_large"]
    message: str | None = None  # qwen35 extension: the reason in words (e.g. the account's credits ran out)


class WebSearchToolResultBlock(WireModel):
    type: Literal["web_search_tool_result"] = "web_search_tool_result"
    tool_use_id: str
    content: list[WebSearchResultBlock] | WebSearchToolResultError
    caller: dict[str, str] = Field(default_factory=lambda: {"type": "direct"})


ContentBlock = Annotated[
    Union[TextBlock, ThinkingBlock, RedactedThinkingBlock, ToolUseBlock, ServerToolUseBlock,
          WebSearchToolResultBlock],
    Field(discriminator="type"),
]


class CacheCreation(WireModel):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class OutputTokensDetails(WireModel):
    thinking_tokens: int


class MessageUsage(CostedUsage):
    """`input_tokens` excludes cache reads and writes: total prompt = input + cache_read + cache_creation."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation: CacheCreation = Field(default_factory=CacheCreation)
    output_tokens_details: OutputTokensDetails | None = None
    server_tool_use: dict[str, int] | None = None
    service_tier: Literal["standard", "priority", "batch"] = "standard"
    inference_geo: str | None = None


class Message(WireModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    container: dict[str, Any] | None = None
    usage: MessageUsage


# ---- stream events -------------------------------------------------------------------------------------------


class TextDeltaPayload(WireModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ThinkingDeltaPayload(WireModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDeltaPayload(WireModel):
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


class CitationsDeltaPayload(WireModel):
    type: Literal["citations_delta"] = "citations_delta"
    citation: dict[str, Any]


class InputJsonDeltaPayload(WireModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


BlockDelta = Annotated[
    Union[TextDeltaPayload, ThinkingDeltaPayload, SignatureDeltaPayload, InputJsonDeltaPayload,
          CitationsDeltaPayload],
    Field(discriminator="type"),
]


class MessageStartEvent(WireModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(WireModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class ContentBlockDeltaEvent(WireModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: BlockDelta


class ContentBlockStopEvent(WireModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDeltaPayload(WireModel):
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    container: dict[str, Any] | None = None


class MessageDeltaUsage(CostedUsage):
    """Cumulative: the SDK overwrites its snapshot with every non-null field."""

    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: OutputTokensDetails | None = None
    server_tool_use: dict[str, int] | None = None


class MessageDeltaEvent(WireModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDeltaPayload
    usage: MessageDeltaUsage


class MessageStopEvent(WireModel):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(WireModel):
    type: Literal["ping"] = "ping"


class ErrorDetail(WireModel):
    type: str
    message: str


class ErrorEvent(WireModel):
    """Both the in-stream `event: error` payload and (with request_id) the HTTP error body."""

    type: Literal["error"] = "error"
    error: ErrorDetail
    request_id: str | None = None


StreamEvent = Union[
    MessageStartEvent,
    ContentBlockStartEvent,
    ContentBlockDeltaEvent,
    ContentBlockStopEvent,
    MessageDeltaEvent,
    MessageStopEvent,
    PingEvent,
    ErrorEvent,
]


# ---- count_tokens and models ---------------------------------------------------------------------------------


class MessageTokensCount(WireModel):
    input_tokens: int


class ModelInfo(WireModel):
    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str  # RFC 3339
    lifecycle: Literal["active", "deprecated", "retired"] = "active"
    max_input_tokens: int | None = None
    max_tokens: int | None = None


class ModelList(WireModel):
    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None
