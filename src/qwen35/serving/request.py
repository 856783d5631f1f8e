"""The protocol-neutral generation request every API family converts into.

Owns `GenerationRequest` (what to generate and how) and its small value parts (`ToolSpec`, `ToolChoice`,
`ResponseFormat`, `WebSearchOptions`).
Imports nothing from api/, platform/ or torch. Messages are template-ready dicts (the shape the Qwen chat template
reads: role, content as text, reasoning_content, tool_calls with *object* arguments, tool results as role "tool"),
so API converters do the protocol work once and the core never re-parses a protocol.
Invariant: a request carries either `messages` (chat) or `prompt_token_ids` (raw completion), never both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from qwen35.serving.sampling import Sampling

ToolChoiceMode = Literal["none", "auto", "required", "named"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; `parameters` is its JSON schema (used to type parsed arguments)."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None

    def to_template(self) -> dict[str, Any]:
        """The OpenAI-style tool dict the chat template prints inside <tools> (as transformers users pass it)."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        if self.parameters is not None:
            function["parameters"] = dict(self.parameters)
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    """none: tools are not offered; auto: the model decides (a `strict` tool's arguments, or a single call when
    parallel calls are off, are still enforced); required / named: the answer is tool calls, enforced by grammar
    (named offers and allows only that tool)."""

    mode: ToolChoiceMode = "auto"
    name: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    """The answer's shape: free text, one JSON object, or JSON following `schema` (True: any JSON value); the
    JSON shapes are enforced by grammar. `param` is the request field that asked for it (named in errors)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: Mapping[str, Any] | bool | None = None
    param: str = "response_format"


SearchContextSize = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class WebSearchOptions:
    """The server-run web search tool, as a request enabled it (Responses `web_search` tool, Chat
    `web_search_options`, Anthropic `web_search_*` server tool). The model sees a `web_search` function; a call of
    it is run by the server (`serving.search_loop`), never returned to the client. `max_uses` None: the server's
    limit. Domains and dates filter the provider's results; `context_size` sets how much of them the model reads."""

    max_uses: int | None = None
    context_size: SearchContextSize = "medium"
    include_domains: tuple[str, ...] = ()
    exclude_domains: tuple[str, ...] = ()
    from_date: str | None = None  # YYYY-MM-DD
    to_date: str | None = None
    location: str | None = None  # a user location hint ("Paris, FR"), added to the model's tool description
    param: str = "tools"  # the request field that enabled it (named in errors)


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: a chat (rendered with the template) or a raw token prompt, plus every control.

    `sampling` holds the sampler controls, resolved by `serving.sampling` (one table of defaults for every API).
    `max_tokens` counts reasoning and answer tokens together; None means "up to the context limit".
    """

    request_id: str
    messages: tuple[Mapping[str, Any], ...] | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    max_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    # output detail
    logprobs: int | None = None  # None: no logprobs; k: the sampled token + k alternatives (answer tokens only)
    prompt_logprobs: int | None = None  # raw completions with echo
    # thinking (chat only; raw prompts never think)
    enable_thinking: bool | None = None
    reasoning_effort: ReasoningEffort | None = None
    thinking_budget: int | None = None
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # raw completions: no output parsing (text stays text, <think> and <tool_call> included)
    raw_output: bool = False
    skip_special_tokens: bool = True
    # the server-run web search tool (None: not offered)
    web_search: WebSearchOptions | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None
