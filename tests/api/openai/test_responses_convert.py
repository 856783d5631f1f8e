"""Responses request bodies -> GenerationRequest: items, chains, tools, reasoning controls, typed 400s."""

from __future__ import annotations

from typing import Any

import pytest

from qwen35.api.openai.responses_convert import input_items, response_shell, to_generation_request
from qwen35.api.openai.responses_request import ResponsesRequest
from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.request import ToolChoice, ToolSpec

TOOL = {"type": "function", "name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
        "strict": True}


def _req(**body: Any) -> ResponsesRequest:
    body.setdefault("model", "qwen3-5-4b")
    return ResponsesRequest.model_validate(body)


def test_string_input_and_instructions() -> None:
    req = to_generation_request(_req(input="Hi", instructions="Be brief."), "resp_1")
    assert req.messages == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"})
    # the product's defaults, the same on every API (serving.sampling)
    assert req.max_tokens == 4096 and req.sampling.temperature == 0.7 and req.sampling.top_p == 0.95
    assert req.sampling.top_k == 20 and req.logprobs is None


def test_items_fold_one_assistant_turn() -> None:
    items = [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "1+2?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "add"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Calling.", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "add", "arguments": '{"a": 1}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "3"},
    ]
    req = to_generation_request(_req(input=items, tools=[TOOL]), "resp_2")
    assert req.messages == (
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "1+2?"},
        {
            "role": "assistant",
            "content": "Calling.",
            "reasoning_content": "add",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "3"},
    )
    assert req.tools == (ToolSpec("add", None, TOOL["parameters"], True),)


def test_history_precedes_new_input_and_instructions_are_not_carried() -> None:
    history = [
        {"type": "message", "role": "user", "content": "first"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "one", "annotations": [], "logprobs": []}]},
    ]
    req = to_generation_request(_req(input="second", previous_response_id="resp_0"), "resp_3", history)
    assert req.messages == (
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"},
    )


def test_controls() -> None:
    req = to_generation_request(
        _req(input="q", reasoning={"effort": "low"}, max_output_tokens=64, temperature=0, top_p=0.5,
             include=["message.output_text.logprobs"], top_logprobs=3, tool_choice={"type": "function", "name": "add"},
             tools=[TOOL], parallel_tool_calls=False, thinking_budget=2048),
        "resp_4",
    )
    assert (req.reasoning_effort, req.thinking_budget, req.max_tokens, req.sampling.temperature, req.sampling.top_p,
            req.logprobs) == (
        "low", 2048, 64, 0.0, 0.5, 3)
    assert req.tool_choice == ToolChoice("named", "add") and req.parallel_tool_calls is False


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "computer_call_output", "call_id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "input[0].content[0].image_url"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]}, "input[0].arguments"),
        ({"input": "q", "tools": [{"type": "file_search"}]}, "tools[0].type"),
        ({"input": "q", "tools": [TOOL], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({}, "input"),
    ],
)
def test_rejections_name_the_field(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        to_generation_request(_req(**body), "resp_x")
    assert info.value.param == param


def test_input_items_normalise_for_storage() -> None:
    assert input_items(_req(input="hi")) == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    stored = input_items(_req(input=[{"role": "assistant", "content": "x"}]))
    assert stored == [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x",
                                                                            "annotations": []}]}]


def test_shell_echoes_request() -> None:
    shell = response_shell(_req(input="q", tools=[TOOL], instructions="I", max_output_tokens=32, store=False,
                                reasoning={"effort": "high", "summary": "auto"}, metadata={"k": "v"}), "resp_9", "m")
    wire = shell.to_wire()
    assert wire["tools"] == [TOOL] and wire["instructions"] == "I" and wire["store"] is False
    assert wire["reasoning"] == {"effort": "high", "summary": "auto"} and wire["metadata"] == {"k": "v"}
    assert wire["max_output_tokens"] == 32 and wire["status"] == "in_progress"
