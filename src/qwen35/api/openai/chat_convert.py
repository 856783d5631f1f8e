"""Chat Completions request -> GenerationRequest (pure conversion, no I/O).

Owns the mapping of OpenAI messages onto the Qwen template's message dicts: developer -> system (leading system and
developer messages merged), text parts joined, assistant tool_calls with JSON-string arguments parsed into objects,
tool / legacy function results -> role "tool". Imports serving request types and the chat request models.
Invariant: anything the template cannot show (images, audio, files until the vision issue; bad tool arguments)
is a 400 naming the exact message/part, never a template crash.
"""

from __future__ import annotations

import json
from typing import Any

from qwen35.api.openai.chat_request import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    FunctionMessage,
    ImageUrlPart,
    NamedToolChoice,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    VideoUrlPart,
)
from qwen35.api.openai.web_search_options import chat_options
from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.media import MediaPart
from qwen35.serving.request import GenerationRequest, ResponseFormat, ToolChoice, ToolSpec

_UNSUPPORTED_PART = {
    "input_audio": "Audio input is not supported by this model",
    "file": "File input is not supported by this server",
}


def to_generation_request(body: ChatCompletionRequest, request_id: str) -> GenerationRequest:
    tools = tuple(
        ToolSpec(t.function.name, t.function.description, t.function.parameters, t.function.strict)
        for t in body.tools or ()
    )
    if isinstance(body.tool_choice, NamedToolChoice):
        choice = ToolChoice("named", body.tool_choice.function.name)
    else:
        choice = ToolChoice(body.tool_choice or ("auto" if tools or body.web_search_options is not None else "none"))
    return GenerationRequest(
        request_id=request_id,
        messages=tuple(convert_messages(body)),
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        response_format=_response_format(body),
        max_tokens=body.output_limit(),
        logprobs=body.num_logprobs(),
        enable_thinking=body.enable_thinking,
        reasoning_effort=body.reasoning_effort,
        thinking_budget=body.thinking_budget,
        chat_template_kwargs=dict(body.chat_template_kwargs or {}),
        skip_special_tokens=body.skip_special_tokens,
        sampling=body.sampling(),
        web_search=chat_options(body.web_search_options),
    )


def _response_format(body: ChatCompletionRequest) -> ResponseFormat:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return ResponseFormat()
    if fmt.type == "json_object":
        return ResponseFormat("json_object")
    assert fmt.json_schema is not None  # the request model requires it
    return ResponseFormat("json_schema", fmt.json_schema.schema_, param="response_format.json_schema.schema")


def convert_messages(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    leading_system = True
    for i, message in enumerate(body.messages):
        where = f"messages[{i}]"
        if isinstance(message, (SystemMessage, DeveloperMessage)):
            text = _text(message.content, where)
            if leading_system and out:
                out[0]["content"] = f"{out[0]['content']}\n\n{text}"
            else:
                # a system message after the first turn: the template refuses it with a clear message
                out.append({"role": "system", "content": text})
            continue
        leading_system = False
        if isinstance(message, UserMessage):
            out.append({"role": "user", "content": _user_content(message.content, where)})
        elif isinstance(message, AssistantMessage):
            out.append(_assistant(message, where))
        elif isinstance(message, ToolMessage):
            out.append({"role": "tool", "content": _text(message.content, where), "tool_call_id": message.tool_call_id})
        elif isinstance(message, FunctionMessage):
            out.append({"role": "tool", "content": message.content or "", "name": message.name})
    return out


def _user_content(content: object, where: str) -> str | list[dict[str, Any]]:
    """Text, or the template's content list when the message carries images or videos."""
    if not isinstance(content, list) or not any(isinstance(p, (ImageUrlPart, VideoUrlPart)) for p in content):
        return _text(content, where)
    items: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        if isinstance(part, ImageUrlPart):
            url, extra = _media_ref(part.image_url, param)
            detail = extra.get("detail")
            if detail not in (None, "auto", "low", "high"):
                raise InvalidRequestError("detail must be auto, low or high", param=f"{param}.image_url.detail")
            items.append({"type": "image", "image": MediaPart("image", url=url, detail=detail, param=param)})
        elif isinstance(part, VideoUrlPart):
            url, extra = _media_ref(part.video_url, param)
            fps = extra.get("fps")
            if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float))):
                raise InvalidRequestError("fps must be a number", param=f"{param}.video_url.fps")
            items.append({"type": "video", "video": MediaPart("video", url=url, fps=fps, param=param)})
        else:
            items.append({"type": "text", "text": _text([part], where)})
    return items


def _media_ref(value: Any, param: str) -> tuple[str, dict[str, Any]]:
    """The URL of an image_url / video_url value ({"url": ...} as OpenAI sends it, or a bare string as vLLM takes)."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        unknown = set(value) - {"url", "detail", "fps"}
        if unknown:
            raise InvalidRequestError(f"Unknown field {sorted(unknown)[0]!r}", param=f"{param}.{sorted(unknown)[0]}")
        return value["url"], value
    raise InvalidRequestError("a media part needs a url", param=param)


def _text(content: object, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    pieces: list[str] = []
    for j, part in enumerate(content):  # type: ignore[attr-defined]
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, RefusalPart):
            pieces.append(part.refusal)
        else:
            kind = getattr(part, "type", "unknown")
            raise InvalidRequestError(
                _UNSUPPORTED_PART.get(kind, f"Unsupported content part type {kind!r}"),
                param=f"{where}.content[{j}]",
                code="unsupported_content",
            )
    return "".join(pieces)  # the template joins text parts with nothing in between, so do we


def _assistant(message: AssistantMessage, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": _text(message.content, where)}
    reasoning = message.reasoning_content if message.reasoning_content is not None else message.reasoning
    if reasoning is not None:
        out["reasoning_content"] = reasoning
    if message.tool_calls:
        calls = []
        for j, call in enumerate(message.tool_calls):
            arguments = _arguments(call.function.arguments, f"{where}.tool_calls[{j}].function.arguments")
            calls.append({"type": "function", "id": call.id, "function": {"name": call.function.name, "arguments": arguments}})
        out["tool_calls"] = calls
    return out


def _arguments(raw: str | dict[str, Any], param: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"Tool call arguments are not valid JSON: {exc.msg}", param=param) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("Tool call arguments must be a JSON object", param=param)
    return value
