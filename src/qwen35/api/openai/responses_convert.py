"""Responses request -> the serving core's `GenerationRequest`, and the Response shell that echoes the request.

Owns the protocol work for Responses input: string or item input, message / function_call / function_call_output /
reasoning items (new or replayed from a `previous_response_id` chain), `instructions`, flat function tools and
tool_choice, `reasoning.effort` + the thinking extensions, sampling and logprob options.
Imports serving request/error types and the sibling Responses protocol types only; storage is the route's job
(it hands the chain's earlier items in as plain JSON).
Invariants: every rejection is an `InvalidRequestError` naming the field; reasoning and function calls of one
assistant turn are folded into one template assistant message (reasoning_content, content, tool_calls) exactly as
Chat Completions would send them, so the same history renders the same tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from qwen35.api.openai.responses_request import (
    FormatJsonObject,
    FormatJsonSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputImage,
    InputItem,
    InputText,
    InputVideo,
    ItemReference,
    MessageItem,
    OtherItem,
    OtherTool,
    OutputTextPart,
    ReasoningItem,
    RefusalPart,
    ResponsesRequest,
    ToolChoiceFunction,
)
from qwen35.api.openai.responses_types import ReasoningEcho, Response
from qwen35.api.openai.web_search_options import RESPONSES_TYPES, responses_options
from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.media import MediaPart
from qwen35.serving.request import GenerationRequest, ResponseFormat, ToolChoice, ToolSpec, WebSearchOptions
from qwen35.serving.sampling import PARAMETERS, check_number, resolve_max_tokens, resolve_sampling

_ITEM = TypeAdapter(InputItem)
_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty",
             "seed", "stop")


def input_items(req: ResponsesRequest) -> list[dict[str, Any]]:
    """This request's input as wire item dicts (what is stored for the chain and listed by input_items)."""
    if req.input is None:
        return []
    if isinstance(req.input, str):
        return [_listed({"type": "message", "role": "user", "content": req.input})]
    return [_listed(item.model_dump(mode="json", by_alias=True, exclude_none=True)) for item in req.input]


def _listed(item: dict[str, Any]) -> dict[str, Any]:
    """Messages are stored with content parts (as `input_items` lists them), never a bare string."""
    if item.get("type") == "message" and isinstance(item.get("content"), str):
        if item.get("role") == "assistant":
            part: dict[str, Any] = {"type": "output_text", "text": item["content"], "annotations": []}
        else:
            part = {"type": "input_text", "text": item["content"]}
        item = {**item, "content": [part]}
    return item


def to_generation_request(
    req: ResponsesRequest, request_id: str, history: Sequence[dict[str, Any]] = ()
) -> GenerationRequest:
    """`history` holds the chain's earlier input and output items (oldest first); `instructions` are not carried."""
    new_items = input_items(req)
    if not new_items and not history:
        raise InvalidRequestError("Missing required parameter: 'input'.", param="input")
    items = [_parse_history(item, i) for i, item in enumerate(history)]
    items.extend(req.input if isinstance(req.input, list) else [_ITEM.validate_python(i) for i in new_items])
    messages = _messages(items, len(history), req.instructions)
    tools = _tools(req)
    web_search = _web_search(req)
    tool_choice = _tool_choice(req, tools, web_search is not None)
    effort = req.reasoning.effort if req.reasoning is not None else None
    if req.reasoning_effort is not None:
        if effort is not None and effort != req.reasoning_effort:
            raise InvalidRequestError("reasoning_effort disagrees with reasoning.effort: send one of them",
                                      param="reasoning_effort")
        effort = req.reasoning_effort
    logprobs = None
    check_number("top_logprobs", req.top_logprobs)
    if req.include and "message.output_text.logprobs" in req.include:
        logprobs = req.top_logprobs or 0
    return GenerationRequest(
        request_id=request_id,
        messages=tuple(messages),
        tools=tuple(tools),
        tool_choice=tool_choice,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        response_format=_response_format(req),
        max_tokens=resolve_max_tokens(req.max_output_tokens, "max_output_tokens"),
        sampling=resolve_sampling(req.model_dump(include=set(_SAMPLING))),
        logprobs=logprobs,
        enable_thinking=req.enable_thinking,
        reasoning_effort=effort,
        thinking_budget=req.thinking_budget,
        web_search=web_search,
    )


def _response_format(req: ResponsesRequest) -> ResponseFormat:
    fmt = req.text.format if req.text is not None else None
    if isinstance(fmt, FormatJsonObject):
        return ResponseFormat("json_object", param="text.format")
    if isinstance(fmt, FormatJsonSchema):
        return ResponseFormat("json_schema", fmt.schema_, param="text.format.schema")
    return ResponseFormat()


def response_shell(req: ResponsesRequest, response_id: str, model: str) -> Response:
    """The in-progress Response echoing the request's settings (status and output are filled by the renderer)."""
    return Response(
        id=response_id,
        created_at=int(time.time()),
        status="in_progress",
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        model=model,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        previous_response_id=req.previous_response_id,
        reasoning=ReasoningEcho(
            effort=req.reasoning.effort if req.reasoning else None,
            summary=(req.reasoning.summary or req.reasoning.generate_summary) if req.reasoning else None,
        ),
        store=req.store is not False,
        temperature=PARAMETERS["temperature"].default if req.temperature is None else req.temperature,
        text=req.text.model_dump(mode="json", by_alias=True, exclude_none=True)
        if req.text is not None and req.text.format is not None
        else {"format": {"type": "text"}, "verbosity": "medium"},
        tool_choice=_tool_choice_echo(req),
        tools=[t.model_dump(mode="json", exclude_none=True) for t in req.tools or ()
               if isinstance(t, FunctionTool) or t.type in RESPONSES_TYPES],
        top_logprobs=req.top_logprobs,
        top_p=PARAMETERS["top_p"].default if req.top_p is None else req.top_p,
        truncation=req.truncation or "disabled",
        user=req.user,
        metadata=dict(req.metadata or {}),
    )


def _tool_choice_echo(req: ResponsesRequest) -> Any:
    choice = req.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump(mode="json", exclude_none=True)


def _parse_history(item: dict[str, Any], i: int) -> Any:
    try:
        return _ITEM.validate_python(item)
    except ValidationError as exc:  # stored by us, so this means a corrupt store: say so rather than crash
        raise InvalidRequestError(f"Stored conversation item {i} is unreadable: {exc.errors()[0]['msg']}",
                                  param="previous_response_id") from exc


# ---- items -> template messages --------------------------------------------------------------------------------


def _messages(items: Sequence[Any], num_history: int, instructions: str | None) -> list[dict[str, Any]]:
    system_parts = [instructions] if instructions else []
    out: list[dict[str, Any]] = []
    assistant: dict[str, Any] | None = None  # the assistant turn being assembled

    def open_assistant() -> dict[str, Any]:
        nonlocal assistant
        if assistant is None:
            assistant = {"role": "assistant", "content": ""}
            out.append(assistant)
        return assistant

    for i, item in enumerate(items):
        path = f"input[{i - num_history}]" if i >= num_history else "previous_response_id"
        if isinstance(item, MessageItem):
            text = _message_text(item, path) if item.role != "user" else ""
            if item.role in ("system", "developer"):
                # The template takes one leading system turn: instructions and system/developer items join it.
                system_parts.append(text)
            elif item.role == "user":
                assistant = None
                out.append({"role": "user", "content": _user_content(item, path)})
            else:
                turn = open_assistant()
                if turn.get("tool_calls"):  # text after calls starts a new turn
                    assistant = None
                    turn = open_assistant()
                turn["content"] += text
        elif isinstance(item, ReasoningItem):
            turn = open_assistant()
            if turn["content"] or turn.get("tool_calls"):
                assistant = None
                turn = open_assistant()
            parts = [p.text for p in item.content or ()] or [p.text for p in item.summary]
            previous = turn.get("reasoning_content")
            turn["reasoning_content"] = "\n\n".join([previous, *parts] if previous else parts)
        elif isinstance(item, FunctionCallItem):
            turn = open_assistant()
            turn.setdefault("tool_calls", []).append(
                {"id": item.call_id, "type": "function",
                 "function": {"name": item.name, "arguments": _arguments(item.arguments, f"{path}.arguments")}}
            )
        elif isinstance(item, FunctionCallOutputItem):
            assistant = None
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": _output_text(item, path)})
        elif isinstance(item, OtherItem) and item.type == "web_search_call":
            continue  # a search the server ran in an earlier turn: the answer that used it follows
        elif isinstance(item, ItemReference):
            raise InvalidRequestError("item_reference input items are not supported; send the item itself",
                                      param=f"{path}.type")
        else:
            raise InvalidRequestError(f"Input items of type '{item.type}' are not supported", param=f"{path}.type")
    system = "\n\n".join(part for part in system_parts if part)
    return ([{"role": "system", "content": system}] if system else []) + out


def _user_content(item: MessageItem, path: str) -> str | list[dict[str, Any]]:
    """Text, or the template's content list when the message carries images or videos."""
    if isinstance(item.content, str) or not any(p.type in ("input_image", "input_video") for p in item.content):
        return _message_text(item, path)
    items: list[dict[str, Any]] = []
    for k, part in enumerate(item.content):
        param = f"{path}.content[{k}]"
        if isinstance(part, InputImage):
            if part.file_id is not None or not part.image_url:
                raise InvalidRequestError("input_image needs an image_url (file ids are not supported)",
                                          param=f"{param}.image_url")
            if part.detail not in (None, "auto", "low", "high"):
                raise InvalidRequestError("detail must be auto, low or high", param=f"{param}.detail")
            items.append({"type": "image", "image": MediaPart("image", url=part.image_url, detail=part.detail,
                                                              param=param)})
        elif isinstance(part, InputVideo):
            items.append({"type": "video", "video": MediaPart("video", url=part.video_url, fps=part.fps, param=param)})
        else:
            items.append({"type": "text", "text": _message_text(MessageItem(role="user", content=[part]), path)})
    return items


def _message_text(item: MessageItem, path: str) -> str:
    if isinstance(item.content, str):
        return item.content
    texts: list[str] = []
    for k, part in enumerate(item.content):
        if isinstance(part, (InputText, OutputTextPart)):
            texts.append(part.text)
        elif isinstance(part, RefusalPart):
            texts.append(part.refusal)
        elif part.type == "input_image":
            raise InvalidRequestError("Image input is not supported by this server yet", param=f"{path}.content[{k}]")
        else:
            raise InvalidRequestError(f"Content of type '{part.type}' is not supported", param=f"{path}.content[{k}]")
    return "".join(texts)


def _output_text(item: FunctionCallOutputItem, path: str) -> str:
    if isinstance(item.output, str):
        return item.output
    return _message_text(MessageItem(role="user", content=item.output), f"{path}.output")


def _arguments(text: str, param: str) -> dict[str, Any]:
    """Function-call arguments arrive as a JSON string; the template needs the object."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        raise InvalidRequestError("function_call arguments must be a JSON object string", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequestError("function_call arguments must be a JSON object string", param=param)
    return value


# ---- tools ---------------------------------------------------------------------------------------------------


def _tools(req: ResponsesRequest) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for i, tool in enumerate(req.tools or ()):
        if isinstance(tool, OtherTool) and tool.type in RESPONSES_TYPES:
            continue  # the server's web search (_web_search)
        if not isinstance(tool, FunctionTool):
            raise InvalidRequestError(f"Tool type '{tool.type}' is not supported; use function tools",
                                      param=f"tools[{i}].type")
        if any(spec.name == tool.name for spec in specs):
            raise InvalidRequestError(f"Duplicate tool name '{tool.name}'", param=f"tools[{i}].name")
        # Responses function tools are strict unless they say otherwise (the API's default)
        strict = tool.strict is not False and tool.parameters is not None
        specs.append(ToolSpec(tool.name, tool.description, tool.parameters, strict))
    return specs


def _web_search(req: ResponsesRequest) -> WebSearchOptions | None:
    found = [(i, t) for i, t in enumerate(req.tools or ()) if isinstance(t, OtherTool) and t.type in RESPONSES_TYPES]
    if len(found) > 1:
        raise InvalidRequestError("Send at most one web_search tool", param=f"tools[{found[1][0]}]")
    if not found:
        if req.max_tool_calls is not None:
            responses_options({}, 0, req.max_tool_calls)  # still validated
        return None
    index, tool = found[0]
    return responses_options(tool.model_dump(), index, req.max_tool_calls)


def _tool_choice(req: ResponsesRequest, tools: list[ToolSpec], web_search: bool = False) -> ToolChoice:
    choice = req.tool_choice
    if choice is None or choice == "auto":
        return ToolChoice("auto")
    if choice == "none":
        return ToolChoice("none")
    if not isinstance(choice, str) and choice.type in RESPONSES_TYPES:
        if not web_search:
            raise InvalidRequestError(f"tool_choice '{choice.type}' requires a web_search tool in tools",
                                      param="tool_choice")
        return ToolChoice("named", "web_search")
    if not tools and not web_search:
        raise InvalidRequestError("tool_choice requires tools", param="tool_choice")
    if choice == "required":
        return ToolChoice("required")
    if isinstance(choice, ToolChoiceFunction):
        if choice.name not in {t.name for t in tools} | ({"web_search"} if web_search else set()):
            raise InvalidRequestError(f"Tool choice '{choice.name}' not found in 'tools' parameter.",
                                      param="tool_choice")
        return ToolChoice("named", choice.name)
    raise InvalidRequestError(f"tool_choice of type '{choice.type}' is not supported",  # type: ignore[union-attr]
                              param="tool_choice")
