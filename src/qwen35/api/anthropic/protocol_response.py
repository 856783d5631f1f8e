"""Anthropic response and stream-event types, typed like `anthropic.types` (2.x).

Owns the pydantic shapes the server sends: Message and its content blocks, usage, every raw stream event,
error bodies, token counts and the Anthropic `/v1/models` shapes. Imports nothing from qwen35.
Invariant: every model serialises with `to_wire()` to exactly the JSON the SDK's strict validation accepts
(nullable fields are sent as null, never omitted, where the SDK or the spec lists them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

StopReason = Literal[
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded"
]


class _Wire(BaseModel):
    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class _CostedUsage(_Wire):
    """Usage with our extension `cost` (USD, as OpenRouter sends it): present once the ledger priced the request,
    left out before (message_start) rather than sent as null, since it is not a field of Anthropic's schema."""

    cost: float | None = None

    @model_serializer(mode="wrap")
    def _omit_unpriced(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        wire: dict[str, Any] = handler(self)
        if wire.get("cost") is None:
            wire.pop("cost", None)
        return wire


class TextBlock(_Wire):
    type: Literal["text"] = "text"
    text: str
    citations: list[dict[str, Any]] | None = None


class ThinkingBlock(_Wire):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(_Wire):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class ToolUseBlock(_Wire):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]
    caller: dict[str, str] = Field(default_factory=lambda: {"type": "direct"})  # spec-required (client tools)


ContentBlock = Annotated[
    Union[TextBlock, ThinkingBlock, RedactedThinkingBlock, ToolUseBlock], Field(discriminator="type")
]


class CacheCreation(_Wire):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class OutputTokensDetails(_Wire):
    thinking_tokens: int


class MessageUsage(_CostedUsage):
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


class Message(_Wire):
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


class TextDeltaPayload(_Wire):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ThinkingDeltaPayload(_Wire):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDeltaPayload(_Wire):
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


class InputJsonDeltaPayload(_Wire):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


BlockDelta = Annotated[
    Union[TextDeltaPayload, ThinkingDeltaPayload, SignatureDeltaPayload, InputJsonDeltaPayload],
    Field(discriminator="type"),
]


class MessageStartEvent(_Wire):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(_Wire):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class ContentBlockDeltaEvent(_Wire):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: BlockDelta


class ContentBlockStopEvent(_Wire):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDeltaPayload(_Wire):
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    container: dict[str, Any] | None = None


class MessageDeltaUsage(_CostedUsage):
    """Cumulative: the SDK overwrites its snapshot with every non-null field."""

    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: OutputTokensDetails | None = None
    server_tool_use: dict[str, int] | None = None


class MessageDeltaEvent(_Wire):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDeltaPayload
    usage: MessageDeltaUsage


class MessageStopEvent(_Wire):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(_Wire):
    type: Literal["ping"] = "ping"


class ErrorDetail(_Wire):
    type: str
    message: str


class ErrorEvent(_Wire):
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


class MessageTokensCount(_Wire):
    input_tokens: int


class ModelInfo(_Wire):
    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str  # RFC 3339
    lifecycle: Literal["active", "deprecated", "retired"] = "active"
    max_input_tokens: int | None = None
    max_tokens: int | None = None


class ModelList(_Wire):
    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None
