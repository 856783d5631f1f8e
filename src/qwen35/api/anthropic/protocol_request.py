"""Anthropic Messages request types (`POST /v1/messages`, `/v1/messages/count_tokens`), typed like the SDK params.

Owns the pydantic shapes of what Anthropic clients send. Imports nothing from qwen35 (pure HTTP-edge types).
Invariant: a body that validates here can be converted to a serving request without any further shape checks;
every rejection names its field path (`messages.0.content.1.type`) so the route can answer a 400 that says what
was wrong. Unknown top-level fields are ignored (clients using beta features send many), unknown content blocks
and server tools are rejected with a clear message rather than silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class _Lenient(BaseModel):
    """Known fields are typed; extra fields (cache_control variants, betas) are tolerated and ignored."""

    model_config = ConfigDict(extra="ignore")


class CacheControl(_Lenient):
    type: Literal["ephemeral"] = "ephemeral"
    ttl: str | None = None


class TextBlockParam(_Lenient):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class ImageBlockParam(_Lenient):
    type: Literal["image"]
    source: dict[str, Any]
    cache_control: CacheControl | None = None


class DocumentBlockParam(_Lenient):
    type: Literal["document"]
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None
    cache_control: CacheControl | None = None


class ToolUseBlockParam(_Lenient):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


ToolResultContent = Annotated[Union[TextBlockParam, ImageBlockParam, DocumentBlockParam], Field(discriminator="type")]


class ToolResultBlockParam(_Lenient):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ToolResultContent] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlockParam(_Lenient):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlockParam(_Lenient):
    type: Literal["redacted_thinking"]
    data: str


class ServerToolUseBlockParam(_Lenient):
    """A server web search of an earlier turn, echoed back by the client (it is not replayed to the model)."""

    type: Literal["server_tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class WebSearchToolResultBlockParam(_Lenient):
    type: Literal["web_search_tool_result"]
    tool_use_id: str
    content: Any = None


ContentBlockParam = Annotated[
    Union[
        ServerToolUseBlockParam,
        WebSearchToolResultBlockParam,
        TextBlockParam,
        ImageBlockParam,
        DocumentBlockParam,
        ToolUseBlockParam,
        ToolResultBlockParam,
        ThinkingBlockParam,
        RedactedThinkingBlockParam,
    ],
    Field(discriminator="type"),
]


class MessageParam(_Lenient):
    # SDK 2.x also types role "system" (text only); it is folded into the system prompt.
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlockParam]


class ToolParam(_Lenient):
    """A client tool, or the web search server tool (`web_search_20250305` / `web_search_20260209`: max_uses,
    domains, user_location); other server tools (`bash_...`) are rejected by the converter."""

    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    type: str | None = None
    cache_control: CacheControl | None = None
    strict: bool | None = None
    max_uses: StrictInt | None = None
    allowed_domains: list[str] | None = None
    blocked_domains: list[str] | None = None
    user_location: dict[str, Any] | None = None


class ToolChoiceAuto(_Lenient):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Lenient):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Lenient):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Lenient):
    type: Literal["none"]


ToolChoiceParam = Annotated[
    Union[ToolChoiceAuto, ToolChoiceAny, ToolChoiceTool, ToolChoiceNone], Field(discriminator="type")
]


class ThinkingEnabled(_Lenient):
    type: Literal["enabled"]
    budget_tokens: StrictInt = Field(ge=1024)
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(_Lenient):
    type: Literal["disabled"]


class ThinkingAdaptive(_Lenient):
    type: Literal["adaptive"]
    display: Literal["summarized", "omitted"] | None = None


class ThinkingBetweenTools(_Lenient):
    type: Literal["between_tools"]
    display: Literal["summarized", "omitted"] | None = None


ThinkingConfigParam = Annotated[
    Union[ThinkingEnabled, ThinkingDisabled, ThinkingAdaptive, ThinkingBetweenTools], Field(discriminator="type")
]


class JsonOutputFormat(_Lenient):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Lenient):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JsonOutputFormat | None = None


class Metadata(_Lenient):
    user_id: str | None = None


class _PromptFields(_Lenient):
    """Fields shared by messages and count_tokens: everything that shapes the prompt."""

    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlockParam] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingConfigParam | None = None
    output_config: OutputConfig | None = None
    output_format: JsonOutputFormat | None = None  # the structured-outputs beta's spelling of output_config.format
    # qwen35 thinking extensions (as on every API); `thinking` / `output_config.effort` are the native spelling
    enable_thinking: bool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    thinking_budget: StrictInt | None = None


class MessagesRequest(_PromptFields):
    max_tokens: StrictInt  # integer fields are strict: 16.0 or "16" is a 400, as on OpenAI, never coerced
    stream: bool = False
    stop_sequences: list[str] | None = None
    # Accepted under every anthropic-version (the real 2026-10-21 API rejects them; our model has no reason to).
    # Ranges and defaults are the product's, the same on every API (serving.sampling).
    temperature: float | None = None
    top_p: float | None = None
    top_k: StrictInt | None = None
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    # qwen35 extensions (top level; the SDK's extra_body lands here): the controls Messages has no field for
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    seed: StrictInt | None = None
    stop: Any = None  # refused: Messages spells it stop_sequences


class CountTokensRequest(_PromptFields):
    pass
