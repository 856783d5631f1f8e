"""Anthropic request bodies -> GenerationRequest: history blocks, tools, thinking policy, typed 400s."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from qwen35.api.anthropic.convert import to_generation_request
from qwen35.api.anthropic.errors import invalid_body
from qwen35.api.anthropic.protocol_request import CountTokensRequest, MessagesRequest
from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.request import ToolChoice, ToolSpec

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "cache_control": {"type": "ephemeral"},
}


def _convert(**body: Any):
    body.setdefault("model", "qwen3-5-4b")
    body.setdefault("max_tokens", 2048)
    return to_generation_request(MessagesRequest.model_validate(body), "msg_test")


def _error(**body: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        _convert(**body)
    return info.value


def test_system_sources_fold_into_one_leading_system_message() -> None:
    req = _convert(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
        ],
    )
    assert req.messages == (
        {"role": "system", "content": "Be brief.\n\nAnswer in French."},
        {"role": "user", "content": "Hi\n\nthere"},
    )


def test_tool_round_trip_history() -> None:
    req = _convert(
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
    )
    assert req.messages[1:] == (
        {
            "role": "assistant",
            "content": "Let me check.",
            "reasoning_content": "Need the tool.",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "user", "content": "Thanks"},
    )
    assert req.tools == (ToolSpec("get_weather", "Weather for a city", WEATHER["input_schema"], None),)
    assert req.tool_choice == ToolChoice("auto")


def test_tool_result_error_flag_is_visible_to_the_model() -> None:
    req = _convert(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}]},
        ]
    )
    assert req.messages[-1] == {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}


@pytest.mark.parametrize(
    ("thinking", "output_config", "expected"),
    [
        (None, None, (None, None, None)),
        ({"type": "enabled", "budget_tokens": 1500}, None, (True, None, 1500)),
        ({"type": "enabled", "budget_tokens": 32000}, None, (True, None, 32000)),
        ({"type": "disabled"}, None, (False, None, None)),
        ({"type": "adaptive"}, {"effort": "high"}, (True, "high", None)),
    ],
)
def test_thinking_maps_to_the_shared_policy(thinking: Any, output_config: Any, expected: tuple) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "q"}], "max_tokens": 32768}
    if thinking is not None:
        body["thinking"] = thinking
    if output_config is not None:
        body["output_config"] = output_config
    req = _convert(**body)
    assert (req.enable_thinking, req.reasoning_effort, req.thinking_budget) == expected


def test_sampling_and_stops() -> None:
    req = _convert(
        messages=[{"role": "user", "content": "q"}], temperature=0.0, top_k=5, top_p=0.5, stop_sequences=["END"],
        max_tokens=77,
    )
    s = req.sampling
    assert (s.temperature, s.top_k, s.top_p, s.stop, req.max_tokens) == (0.0, 5, 0.5, ("END",), 77)


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto", "disable_parallel_tool_use": True}, ToolChoice("auto"), False),
        ({"type": "any"}, ToolChoice("required"), True),
        ({"type": "tool", "name": "get_weather"}, ToolChoice("named", "get_weather"), True),
        ({"type": "none"}, ToolChoice("none"), True),
    ],
)
def test_tool_choice(choice: dict, expected: ToolChoice, parallel: bool) -> None:
    req = _convert(messages=[{"role": "user", "content": "q"}], tools=[WEATHER], tool_choice=choice)
    assert req.tool_choice == expected and req.parallel_tool_calls is parallel


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "x"}}]}]},
         "messages.0.content.0.source"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
            "type": "base64", "media_type": "image/tiff", "data": "AA=="}}]}]}, "messages.0.content.0.source.media_type"),
        ({"messages": [{"role": "user", "content": "q"}], "tools": [{"type": "bash_20250124", "name": "bash"}]},
         "tools.0.type"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "prefill"}]},
         "messages.1.role"),
        ({"messages": [{"role": "user", "content": "q"}], "thinking": {"type": "enabled", "budget_tokens": 4096},
          "max_tokens": 4096}, "thinking.budget_tokens"),
        ({"messages": [{"role": "user", "content": "q"}], "thinking": {"type": "enabled", "budget_tokens": 1024},
          "tools": [WEATHER], "tool_choice": {"type": "any"}}, "tool_choice.type"),
        ({"messages": [{"role": "user", "content": "q"}], "tools": [WEATHER],
          "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]},
         "messages.0.content.0.type"),
    ],
)
def test_rejections_name_the_field(body: dict, param: str) -> None:
    assert _error(**body).param == param


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "q"}]}, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages: List should have at least 1 item"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "bogus"}]}]},
         "messages.0.content.0: Input tag 'bogus'"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "q"}],
          "thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.enabled.budget_tokens"),
    ],
)
def test_validation_messages_read_like_anthropic(body: dict, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        MessagesRequest.model_validate(body)
    assert invalid_body(info.value.errors()).message.startswith(message)


def test_count_tokens_body_has_no_sampling() -> None:
    req = to_generation_request(
        CountTokensRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "q"}]}), "c"
    )
    assert req.messages == ({"role": "user", "content": "q"},) and req.max_tokens is None
