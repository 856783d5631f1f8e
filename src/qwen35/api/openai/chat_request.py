"""Chat Completions request types (`POST /v1/chat/completions`), typed like the openai SDK's params.

Owns the pydantic models of the request body: messages by role, content parts, tools, tool_choice, and the
chat-only controls (logprobs, max_(completion_)tokens, reasoning and the qwen35 thinking extensions).
Imports pydantic, api.openai.params and serving.sampling (ranges). Invariant: a body that validates here converts to a GenerationRequest
without further checks, except the ones that need the tokenizer or the template (done by the serving core).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from qwen35.api.openai.params import Effort, SamplingFields, StrictModel, field_error
from qwen35.serving.sampling import check_number, resolve_max_tokens


class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class ImageUrlPart(StrictModel):
    type: Literal["image_url"]
    image_url: Any = None


class InputAudioPart(StrictModel):
    type: Literal["input_audio"]
    input_audio: Any = None


class FilePart(StrictModel):
    type: Literal["file"]
    file: Any = None


class VideoUrlPart(StrictModel):
    type: Literal["video_url"]
    video_url: Any = None


class RefusalPart(StrictModel):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[
    Union[TextPart, ImageUrlPart, InputAudioPart, FilePart, VideoUrlPart], Field(discriminator="type")
]
AssistantPart = Annotated[Union[TextPart, RefusalPart], Field(discriminator="type")]


class SystemMessage(StrictModel):
    role: Literal["system"]
    content: str | list[TextPart]
    name: str | None = None


class DeveloperMessage(StrictModel):
    role: Literal["developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(StrictModel):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class FunctionCallIn(StrictModel):
    name: str
    arguments: str | dict[str, Any]  # the SDK sends a JSON string; a few clients send the object


class ToolCallIn(StrictModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class AssistantMessage(StrictModel):
    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    name: str | None = None
    refusal: str | None = None


class ToolMessage(StrictModel):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str


class FunctionMessage(StrictModel):
    """Legacy function-result message (role "function"): treated like a tool result."""

    role: Literal["function"]
    content: str | None = None
    name: str


Message = Annotated[
    Union[SystemMessage, DeveloperMessage, UserMessage, AssistantMessage, ToolMessage, FunctionMessage],
    Field(discriminator="role"),
]


class FunctionDef(StrictModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(StrictModel):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(StrictModel):
    name: str


class NamedToolChoice(StrictModel):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(StrictModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(StrictModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatCompletionRequest(SamplingFields):
    """The request body; product defaults for None fields come from serving.sampling."""

    messages: list[Message] = Field(min_length=1)
    logprobs: bool | None = False
    top_logprobs: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    tools: list[ChatTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Effort | None = None
    web_search_options: dict[str, Any] | None = None  # the server runs the searches (serving.search_loop)
    # qwen35 extensions (top level or extra_body)
    enable_thinking: bool | None = None
    thinking_budget: int | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    skip_special_tokens: bool = True

    @model_validator(mode="after")
    def _check_chat(self) -> ChatCompletionRequest:
        for name in ("top_logprobs", "thinking_budget"):
            check_number(name, getattr(self, name))
        for name in ("max_tokens", "max_completion_tokens"):
            resolve_max_tokens(getattr(self, name), name)
        if self.top_logprobs is not None and self.top_logprobs > 0 and not self.logprobs:
            raise field_error("top_logprobs", "top_logprobs requires logprobs to be true")
        searching = self.web_search_options is not None
        if self.tool_choice is not None and self.tool_choice != "none" and not self.tools and not searching:
            raise field_error("tool_choice", "tool_choice is only allowed when tools are specified")
        if self.response_format is not None and self.response_format.type == "json_schema" \
                and self.response_format.json_schema is None:
            raise field_error("response_format.json_schema", "response_format of type 'json_schema' needs `json_schema`")
        names = [t.function.name for t in self.tools or ()]
        if len(set(names)) != len(names):
            raise field_error("tools", "tool function names must be unique")
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in names \
                and not (searching and self.tool_choice.function.name == "web_search"):
            raise field_error("tool_choice", f"tool_choice names {self.tool_choice.function.name!r}, not in tools")
        return self

    def output_limit(self) -> int:
        """max_completion_tokens wins over the deprecated max_tokens; both count reasoning tokens."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return resolve_max_tokens(self.max_tokens) or 0

    def num_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None
