"""OpenAI Responses request types (`POST /v1/responses`), typed like `openai.types.responses` params.

Owns the pydantic shapes of what Responses clients send: input items, flat function tools, tool_choice, reasoning,
text.format and the qwen35 extensions (`thinking_budget`, `enable_thinking`, `top_k`). Imports nothing from qwen35.
Invariant: what validates here converts to a serving request with no further shape checks; input items of kinds we
cannot run (computer calls, MCP, images before the vision issue) are rejected by the converter with a param path.
Unknown top-level fields are ignored: the SDK only sends them via `extra_body`, and agent frameworks send many
newer optional fields we have no use for.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictInt, Tag

Includable = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class InputText(_Lenient):
    type: Literal["input_text"]
    text: str


class OutputTextPart(_Lenient):
    type: Literal["output_text"]
    text: str


class RefusalPart(_Lenient):
    type: Literal["refusal"]
    refusal: str


class InputImage(_Lenient):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputVideo(_Lenient):
    """Our video extension of input content (as chat's `video_url` part): a URL or data: URL, and an fps."""

    type: Literal["input_video"]
    video_url: str
    fps: float | None = None


class InputFile(_Lenient):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None
    file_url: str | None = None


ContentPart = Annotated[
    Union[InputText, OutputTextPart, RefusalPart, InputImage, InputVideo, InputFile], Field(discriminator="type")
]


class MessageItem(_Lenient):
    """EasyInputMessage and ResponseInputItem.Message and replayed ResponseOutputMessage (type may be omitted)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(_Lenient):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(_Lenient):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class SummaryText(_Lenient):
    type: Literal["summary_text"] = "summary_text"
    text: str


class ReasoningText(_Lenient):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ReasoningItem(_Lenient):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: str | None = None


class ItemReference(_Lenient):
    type: Literal["item_reference"]
    id: str


class OtherItem(_Lenient):
    """Any item kind we do not run (computer_call, mcp_*, ...): kept so the converter can name it in a 400."""

    model_config = ConfigDict(extra="allow")
    type: str


_ITEM_KINDS = {"message", "function_call", "function_call_output", "reasoning", "item_reference"}


def _item_kind(value: Any) -> str:
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return kind if kind in _ITEM_KINDS else "other"


InputItem = Annotated[
    Union[
        Annotated[MessageItem, Tag("message")],
        Annotated[FunctionCallItem, Tag("function_call")],
        Annotated[FunctionCallOutputItem, Tag("function_call_output")],
        Annotated[ReasoningItem, Tag("reasoning")],
        Annotated[ItemReference, Tag("item_reference")],
        Annotated[OtherItem, Tag("other")],
    ],
    Discriminator(_item_kind),
]


class FunctionTool(_Lenient):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class OtherTool(_Lenient):
    model_config = ConfigDict(extra="allow")
    type: str


def _function_or_other(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "function" if kind == "function" else "other"


Tool = Annotated[
    Union[Annotated[FunctionTool, Tag("function")], Annotated[OtherTool, Tag("other")]],
    Discriminator(_function_or_other),
]


class ToolChoiceFunction(_Lenient):
    type: Literal["function"]
    name: str


class ToolChoiceOther(_Lenient):
    model_config = ConfigDict(extra="allow")
    type: str


ToolChoiceObject = Annotated[
    Union[Annotated[ToolChoiceFunction, Tag("function")], Annotated[ToolChoiceOther, Tag("other")]],
    Discriminator(_function_or_other),
]
ToolChoice = Union[Literal["none", "auto", "required"], ToolChoiceObject]


class ReasoningParam(_Lenient):
    effort: Effort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class FormatText(_Lenient):
    type: Literal["text"]


class FormatJsonObject(_Lenient):
    type: Literal["json_object"]


class FormatJsonSchema(_Lenient):
    type: Literal["json_schema"]
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[Union[FormatText, FormatJsonObject, FormatJsonSchema], Field(discriminator="type")]


class TextParam(_Lenient):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(_Lenient):
    model: str = Field(min_length=1)
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool | None = True
    stream: bool | None = False
    include: list[Includable] | None = None
    # integer fields are strict (16.0 is a 400, never coerced); ranges and defaults: the product's table (serving.sampling)
    max_output_tokens: StrictInt | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: StrictInt | None = None
    reasoning: ReasoningParam | None = None
    text: TextParam | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: StrictInt | None = None  # built-in tool calls (web searches) per response
    metadata: dict[str, str] | None = None
    user: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    background: bool | None = None
    service_tier: str | None = None
    # qwen35 extensions, accepted at top level (the SDK's extra_body lands here): the controls Responses has no
    # field for, with the same ranges and defaults as on every API
    thinking_budget: StrictInt | None = None
    enable_thinking: bool | None = None
    reasoning_effort: Effort | None = None  # the chat spelling; `reasoning.effort` is the native one
    top_k: StrictInt | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    seed: StrictInt | None = None
    stop: str | list[str] | None = None
