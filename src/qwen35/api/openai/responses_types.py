"""OpenAI Responses output types: the Response object, output items, usage and every stream event we send.

Owns the pydantic shapes typed like `openai.types.responses` (3.x). Imports only api.wire (shared bases).
Invariant: `to_wire()` gives JSON that passes the SDK's strict validation and the OpenAPI spec's required lists:
spec-required nullable fields (error, incomplete_details, instructions, metadata, temperature, top_p) are always
sent, `input_tokens_details.cache_write_tokens` is always present, text parts carry `annotations` and `logprobs`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from qwen35.api.wire import CostedUsage, WireModel


class TopLogprob(WireModel):
    token: str
    logprob: float
    bytes: list[int]


class Logprob(WireModel):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class OutputText(WireModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[Logprob] = Field(default_factory=list)


class ReasoningTextPart(WireModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class SummaryTextPart(WireModel):
    type: Literal["summary_text"] = "summary_text"
    text: str


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputMessage(WireModel):
    type: Literal["message"] = "message"
    id: str
    status: ItemStatus
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class ReasoningOutput(WireModel):
    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[SummaryTextPart] = Field(default_factory=list)
    content: list[ReasoningTextPart] = Field(default_factory=list)
    encrypted_content: str | None = None
    status: ItemStatus | None = None


class FunctionCallOutput(WireModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


class WebSearchSource(WireModel):
    type: Literal["url"] = "url"
    url: str


class WebSearchAction(WireModel):
    """`action` of a web_search_call; `sources` only when the request's `include` asks for them."""

    type: Literal["search"] = "search"
    query: str
    queries: list[str] = Field(default_factory=list)
    sources: list[WebSearchSource] | None = None

    @model_serializer(mode="wrap")
    def _omit_sources(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        wire: dict[str, Any] = handler(self)
        if wire.get("sources") is None:
            wire.pop("sources", None)
        return wire


class WebSearchCallOutput(WireModel):
    """A search the server ran for the model (never a client tool call)."""

    type: Literal["web_search_call"] = "web_search_call"
    id: str
    status: Literal["in_progress", "searching", "completed", "failed"]
    action: WebSearchAction


OutputItem = Annotated[Union[OutputMessage, ReasoningOutput, FunctionCallOutput, WebSearchCallOutput],
                       Field(discriminator="type")]


class InputTokensDetails(WireModel):
    cached_tokens: int
    cache_write_tokens: int = 0


class OutputTokensDetails(WireModel):
    reasoning_tokens: int


class ServerToolUse(WireModel):
    web_search_requests: int


class ResponseUsage(CostedUsage):
    """OpenAI semantics: `input_tokens` includes cached; `output_tokens` includes reasoning. `cost` (USD, as
    OpenRouter sends it) is our extension: the ledger's price of the request, left out until it is known; so is
    `server_tool_use` (Anthropic's shape: billed web searches), sent when the request had web search on."""

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int
    server_tool_use: ServerToolUse | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        wire: dict[str, Any] = handler(self)
        for key in ("cost", "server_tool_use"):
            if wire.get(key) is None:
                wire.pop(key, None)
        return wire


class ResponseErrorInfo(WireModel):
    code: str
    message: str


class IncompleteDetails(WireModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ReasoningEcho(WireModel):
    effort: str | None = None
    summary: str | None = None


ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]


class Response(WireModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    background: bool = False
    error: ResponseErrorInfo | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: ReasoningEcho = Field(default_factory=ReasoningEcho)
    service_tier: str = "default"
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}, "verbosity": "medium"})
    tool_choice: Any = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    top_logprobs: int | None = None
    top_p: float | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    completed_at: int | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        wire = handler(self)
        for key in _OMIT_WHEN_NONE:  # the spec types these as non-nullable when present: leave them out
            if wire.get(key) is None:
                wire.pop(key, None)
        return wire


_OMIT_WHEN_NONE = ("user", "usage")


class DeletedResponse(WireModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


class InputItemList(WireModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool = False


class InputTokens(WireModel):
    object: Literal["response.input_tokens"] = "response.input_tokens"
    input_tokens: int
