"""Anthropic Messages request -> the serving core's `GenerationRequest` (template-ready messages and controls).

Owns the protocol work for Anthropic input: system (string or blocks, plus SDK 2.x `role: "system"` messages),
merging of consecutive same-role turns, tool_use / tool_result / thinking / redacted_thinking blocks in history,
tools and tool_choice, the `thinking` and `output_config.effort` controls mapped onto the one thinking policy.
Imports serving request/error types and this package's protocol types only.
Invariants: every rejection is an `InvalidRequestError` whose `param` is the field path; a request that converts
renders with the Qwen chat template exactly as the equivalent Chat Completions request would (same message dicts).
"""

from __future__ import annotations

from typing import Any

from qwen35.api.anthropic.protocol_request import (
    CountTokensRequest,
    DocumentBlockParam,
    ImageBlockParam,
    MessageParam,
    MessagesRequest,
    RedactedThinkingBlockParam,
    ServerToolUseBlockParam,
    TextBlockParam,
    ThinkingAdaptive,
    ThinkingBetweenTools,
    ThinkingBlockParam,
    ThinkingDisabled,
    ThinkingEnabled,
    ToolChoiceAny,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlockParam,
    ToolUseBlockParam,
    WebSearchToolResultBlockParam,
)
from qwen35.api.anthropic.web_search_tool import TOOL_TYPES, options
from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.media import MediaPart
from qwen35.serving.request import GenerationRequest, ResponseFormat, ToolChoice, ToolSpec, WebSearchOptions
from qwen35.serving.sampling import check_number, resolve_max_tokens, resolve_sampling

_CLIENT_TOOL_TYPES = (None, "custom")
_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty",
             "seed")


def to_generation_request(req: MessagesRequest | CountTokensRequest, request_id: str) -> GenerationRequest:
    """Convert a validated Messages (or count_tokens) body; raises InvalidRequestError naming the field."""
    messages = _messages(req)
    tools = _tools(req)
    web_search = _web_search(req)
    tool_choice, parallel = _tool_choice(req, tools, web_search is not None)
    enable_thinking, effort, budget = _thinking(req, tool_choice)
    fields: dict[str, Any] = {}
    if isinstance(req, MessagesRequest):
        if req.stop is not None:
            raise InvalidRequestError("stop: not supported here; Messages spells it `stop_sequences`", param="stop")
        max_tokens = resolve_max_tokens(req.max_tokens)
        if isinstance(req.thinking, ThinkingEnabled) and req.thinking.budget_tokens >= req.max_tokens:
            raise InvalidRequestError(
                "`max_tokens` must be greater than `thinking.budget_tokens`.", param="thinking.budget_tokens"
            )
        values = req.model_dump(include=set(_SAMPLING))
        values["stop"] = req.stop_sequences
        fields = {"max_tokens": max_tokens, "sampling": resolve_sampling(values, {"stop": "stop_sequences"})}
    return GenerationRequest(
        request_id=request_id,
        messages=tuple(messages),
        tools=tuple(tools),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=_output_format(req),
        enable_thinking=enable_thinking,
        reasoning_effort=effort,  # type: ignore[arg-type]
        thinking_budget=budget,
        web_search=web_search,
        **fields,
    )


def _output_format(req: MessagesRequest | CountTokensRequest) -> ResponseFormat:
    """`output_config.format` (SDK >= 2.15 and messages.parse) or the beta's top-level `output_format`."""
    current = req.output_config.format if req.output_config is not None else None
    if current is not None and req.output_format is not None:
        raise InvalidRequestError("output_format: send either `output_config.format` or `output_format`, not both",
                                  param="output_format")
    if current is not None:
        return ResponseFormat("json_schema", current.schema_, param="output_config.format.schema")
    if req.output_format is not None:
        return ResponseFormat("json_schema", req.output_format.schema_, param="output_format.schema")
    return ResponseFormat()


def thinking_display(req: MessagesRequest) -> str | None:
    thinking = req.thinking
    return getattr(thinking, "display", None) if thinking is not None else None


# ---- messages ------------------------------------------------------------------------------------------------


def _system_text(blocks: str | list[TextBlockParam] | None) -> str:
    if blocks is None:
        return ""
    if isinstance(blocks, str):
        return blocks
    return "\n\n".join(block.text for block in blocks)


def _messages(req: MessagesRequest | CountTokensRequest) -> list[dict[str, Any]]:
    system_parts = [_system_text(req.system)] if req.system else []
    turns: list[tuple[int, str, list[Any]]] = []  # (index of the first source message, role, blocks)
    for i, message in enumerate(req.messages):
        if message.role == "system":
            # SDK 2.x types system messages; the template allows one system turn, first: fold them all into it.
            if isinstance(message.content, list) and any(not isinstance(b, TextBlockParam) for b in message.content):
                raise InvalidRequestError("system messages may only contain text blocks", param=f"messages.{i}.content")
            system_parts.append(_system_text(message.content))  # type: ignore[arg-type]
            continue
        if turns and turns[-1][1] == message.role:
            turns[-1][2].extend(_blocks(message))  # consecutive same-role turns merge, as in the Messages API
        else:
            turns.append((i, message.role, _blocks(message)))
    if not turns:
        raise InvalidRequestError("messages: at least one user message is required", param="messages")
    if turns[-1][1] == "assistant":
        raise InvalidRequestError(
            "messages: the final message must have role `user` (assistant prefill is not supported)",
            param=f"messages.{len(req.messages) - 1}.role",
        )
    out: list[dict[str, Any]] = []
    system = "\n\n".join(part for part in system_parts if part)
    if system:
        out.append({"role": "system", "content": system})
    for index, role, blocks in turns:
        path = f"messages.{index}"
        out.extend(_user_turn(blocks, path) if role == "user" else [_assistant_turn(blocks, path)])
    return out


def _blocks(message: MessageParam) -> list[Any]:
    if isinstance(message.content, str):
        return [TextBlockParam(type="text", text=message.content)]
    return list(message.content)


def _text_of(block: Any, path: str) -> str:
    if isinstance(block, TextBlockParam):
        return block.text
    if isinstance(block, DocumentBlockParam):
        source = block.source
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return source["data"]
        raise InvalidRequestError(
            "document blocks are supported with a plain-text source only", param=f"{path}.source.type"
        )
    raise InvalidRequestError(f"a `{block.type}` block is not allowed here", param=f"{path}.type")


def _user_turn(blocks: list[Any], path: str) -> list[dict[str, Any]]:
    """A user turn: tool_result blocks become template `tool` messages; other text groups into user messages."""
    out: list[dict[str, Any]] = []
    texts: list[str | dict[str, Any]] = []  # text blocks, and image items (template content list) among them
    for j, block in enumerate(blocks):
        where = f"{path}.content.{j}"
        if isinstance(block, ToolResultBlockParam):
            if texts:
                out.append({"role": "user", "content": _user_content(texts)})
                texts = []
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": _tool_result_text(block, where)})
        elif isinstance(block, (ToolUseBlockParam, ThinkingBlockParam, RedactedThinkingBlockParam)):
            raise InvalidRequestError(f"a `{block.type}` block is only allowed in assistant turns", param=f"{where}.type")
        elif isinstance(block, ImageBlockParam):
            texts.append({"type": "image", "image": _image(block, where)})
        else:
            texts.append(_text_of(block, where))
    if texts or not out:
        out.append({"role": "user", "content": _user_content(texts)})
    return out


def _user_content(pieces: list[str | dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text blocks joined by blank lines; with images, the template's content list (text items in between)."""
    if all(isinstance(p, str) for p in pieces):
        return "\n\n".join(p for p in pieces if isinstance(p, str))
    return [p if isinstance(p, dict) else {"type": "text", "text": p} for p in pieces]


def _image(block: ImageBlockParam, path: str) -> MediaPart:
    """An image block: a base64 source (media_type + data) or a url source."""
    source = block.source
    kind = source.get("type")
    if kind == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type")
        if media_type not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
            raise InvalidRequestError("source.media_type must be image/jpeg, image/png, image/gif or image/webp",
                                      param=f"{path}.source.media_type")
        return MediaPart("image", base64_data=source["data"], media_type=media_type, param=path)
    if kind == "url" and isinstance(source.get("url"), str):
        return MediaPart("image", url=source["url"], param=path)
    raise InvalidRequestError("image source must be {type: base64, media_type, data} or {type: url, url}",
                              param=f"{path}.source")


def _tool_result_text(block: ToolResultBlockParam, path: str) -> str:
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "\n\n".join(_text_of(part, f"{path}.content.{k}") for k, part in enumerate(content))
    # The template has no error flag for tool responses: say it in the text so the model can react.
    return f"Error: {text}" if block.is_error else text


def _assistant_turn(blocks: list[Any], path: str) -> dict[str, Any]:
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{path}.content.{j}"
        if isinstance(block, ThinkingBlockParam):
            reasoning.append(block.thinking)
        elif isinstance(block, (RedactedThinkingBlockParam, ServerToolUseBlockParam, WebSearchToolResultBlockParam)):
            continue  # opaque, or a search of an earlier turn: the answer that used it follows
        elif isinstance(block, ToolUseBlockParam):
            tool_calls.append(
                {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": dict(block.input)}}
            )
        elif isinstance(block, ToolResultBlockParam):
            raise InvalidRequestError("a `tool_result` block is only allowed in user turns", param=f"{where}.type")
        else:
            texts.append(_text_of(block, where))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


# ---- tools and thinking --------------------------------------------------------------------------------------


def _tools(req: MessagesRequest | CountTokensRequest) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for i, tool in enumerate(req.tools or ()):
        if tool.type in TOOL_TYPES:
            continue  # the server's web search (_web_search)
        if tool.type not in _CLIENT_TOOL_TYPES:
            raise InvalidRequestError(f"tools.{i}: tool type `{tool.type}` is not supported", param=f"tools.{i}.type")
        if tool.name in seen:
            raise InvalidRequestError(f"tools: tool names must be unique (`{tool.name}`)", param=f"tools.{i}.name")
        if tool.input_schema.get("type", "object") != "object":
            raise InvalidRequestError("input_schema.type must be `object`", param=f"tools.{i}.input_schema.type")
        seen.add(tool.name)
        specs.append(ToolSpec(name=tool.name, description=tool.description, parameters=tool.input_schema, strict=tool.strict))
    return specs


def _web_search(req: MessagesRequest | CountTokensRequest) -> WebSearchOptions | None:
    found = [(i, t) for i, t in enumerate(req.tools or ()) if t.type in TOOL_TYPES]
    if len(found) > 1:
        raise InvalidRequestError("tools: send at most one web_search tool", param=f"tools.{found[1][0]}")
    return options(found[0][1], found[0][0]) if found else None


def _tool_choice(
    req: MessagesRequest | CountTokensRequest, tools: list[ToolSpec], web_search: bool = False
) -> tuple[ToolChoice, bool]:
    choice = req.tool_choice
    parallel = not bool(getattr(choice, "disable_parallel_tool_use", None))
    if choice is None:
        return ToolChoice("auto"), True
    if isinstance(choice, ToolChoiceNone):
        return ToolChoice("none"), parallel
    if not tools and not web_search and not isinstance(choice, ToolChoiceNone) and choice.type != "auto":
        raise InvalidRequestError("tool_choice requires `tools` to be set", param="tool_choice")
    if isinstance(choice, ToolChoiceAny):
        return ToolChoice("required"), parallel
    if isinstance(choice, ToolChoiceTool):
        if choice.name not in {t.name for t in tools} | ({"web_search"} if web_search else set()):
            raise InvalidRequestError(f"tool_choice names `{choice.name}`, which is not in tools", param="tool_choice.name")
        return ToolChoice("named", choice.name), parallel
    return ToolChoice("auto"), parallel


def _thinking(
    req: MessagesRequest | CountTokensRequest, tool_choice: ToolChoice
) -> tuple[bool | None, str | None, int | None]:
    """(enable_thinking, reasoning_effort, thinking_budget) for the shared policy. No `thinking` field means the
    server default (thinking on, default budget), the same as the other APIs."""
    thinking = req.thinking
    effort = req.output_config.effort if req.output_config is not None else None
    extensions = {"enable_thinking": req.enable_thinking, "reasoning_effort": req.reasoning_effort,
                  "thinking_budget": req.thinking_budget}
    sent = [name for name, value in extensions.items() if value is not None]
    if sent and (thinking is not None or effort is not None):
        raise InvalidRequestError(
            f"{sent[0]}: send either `thinking` / `output_config.effort` or the qwen35 extension, not both",
            param=sent[0],
        )
    if sent:
        check_number("thinking_budget", req.thinking_budget)
        return req.enable_thinking, req.reasoning_effort, req.thinking_budget
    if isinstance(thinking, ThinkingDisabled):
        return False, None, None
    if thinking is not None and tool_choice.mode in ("required", "named"):
        raise InvalidRequestError(
            "Thinking may not be enabled when tool_choice forces tool use.", param="tool_choice.type"
        )
    if isinstance(thinking, ThinkingEnabled):
        budget = check_number("thinking_budget", thinking.budget_tokens, {"thinking_budget": "thinking.budget_tokens"})
        return True, effort, int(budget or 0)
    if isinstance(thinking, (ThinkingAdaptive, ThinkingBetweenTools)):
        return True, effort, None
    return None, effort, None
