"""Chat template rendering is byte-identical to transformers' apply_chat_template(tokenize=False)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from processor_cases import DATA, rendered_examples

from qwen35.processor.chat_template import ChatTemplate, ChatTemplateError

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web — returns JSON \"results\" <b>unescaped</b> & ünïcode",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "filters": {"type": "object"}}},
    },
}


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CASES: dict[str, dict[str, Any]] = {
    "multi_turn_reasoning": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!", "reasoning_content": "Say hello."},
            {"role": "user", "content": "What is 3*7?"},
            {"role": "assistant", "content": "21", "reasoning_content": "  3*7 = 21\n\n"},
            {"role": "user", "content": "And 4*5?"},
        ],
    },
    "reasoning_inside_content": {
        "messages": [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "<think>\nfirst\n</think>\n\nA1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "<think>\nsecond\n</think>\n\nA2"},
        ],
        "add_generation_prompt": False,
    },
    "parallel_tool_calls_and_results": {
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris and Tokyo, 3 days?"},
            {
                "role": "assistant",
                "content": "Let me check both.",
                "reasoning_content": "Two cities: call twice.",
                "tool_calls": [
                    _call("c1", "get_weather", {"city": "Paris", "days": 3}),
                    _call("c2", "get_weather", {"city": "Tokyo", "unit": "celsius", "days": 3}),
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 18}'},
            {"role": "tool", "tool_call_id": "c2", "content": '{"temp": 25}'},
        ],
        "tools": [WEATHER_TOOL, SEARCH_TOOL],
    },
    "tool_call_structured_arguments": {
        "messages": [
            {"role": "user", "content": "search"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    _call("c1", "search", {"query": "qwen 3.5", "filters": {"year": 2026, "tags": ["a", "b"]}})
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "[]"},
            {"role": "assistant", "content": "Nothing found."},
            {"role": "user", "content": "ok"},
        ],
        "tools": [SEARCH_TOOL],
        "enable_thinking": False,
    },
    "system_and_tools_thinking_off": {
        "messages": [{"role": "system", "content": "  System with spaces  "}, {"role": "user", "content": "hi"}],
        "tools": [WEATHER_TOOL],
        "enable_thinking": False,
    },
    "content_parts": {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "sys part"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look: "},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "video", "video": "file.mp4"},
                    {"type": "text", "text": "what?"},
                ],
            },
        ],
        "add_vision_id": True,
    },
    "tool_result_then_generation_in_multi_step": {
        "messages": [
            {"role": "user", "content": "step"},
            {"role": "assistant", "content": "", "tool_calls": [_call("a", "search", {"query": "x"})]},
            {"role": "tool", "tool_call_id": "a", "content": "r1"},
            {"role": "assistant", "content": "", "tool_calls": [_call("b", "search", {"query": "y"})]},
            {"role": "tool", "tool_call_id": "b", "content": "r2"},
        ],
        "tools": [SEARCH_TOOL],
    },
    "reasoning_alias_fields": {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning": "via the reasoning alias"},
            {"role": "tool", "content": "stray tool result"},
        ],
        "add_generation_prompt": True,
    },
}


def _hf_render(hf_tokenizer: Any, template: str, case: dict[str, Any]) -> str:
    kwargs = {k: v for k, v in case.items() if k not in ("messages", "tools")}
    kwargs.setdefault("add_generation_prompt", True)
    return hf_tokenizer.apply_chat_template(
        copy.deepcopy(case["messages"]),
        tools=case.get("tools"),
        chat_template=template,
        tokenize=False,
        **kwargs,
    )


def _our_render(template: ChatTemplate, case: dict[str, Any]) -> str:
    kwargs = {k: v for k, v in case.items() if k not in ("messages", "tools")}
    kwargs.setdefault("add_generation_prompt", True)
    kwargs.setdefault("enable_thinking", None)  # undefined unless the case sets it, as with transformers
    return template.render(case["messages"], tools=case.get("tools"), **kwargs)


@pytest.mark.parametrize("case", rendered_examples(), ids=lambda c: c["title"][:2])
def test_reference_examples(case: dict[str, Any], hf_tokenizer: Any) -> None:
    source = (DATA / "chat_template_2b.jinja").read_text() if case["template"] == "2b" else None
    template = ChatTemplate(source) if source else ChatTemplate.default()
    inputs = case["inputs"]
    merged = {"messages": inputs["messages"], "tools": inputs["tools"], **inputs["template_kwargs"]}
    assert _our_render(template, merged) == case["prompt"]
    assert _hf_render(hf_tokenizer, template.source, merged) == case["prompt"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_transformers(name: str, hf_tokenizer: Any) -> None:
    case = CASES[name]
    template = ChatTemplate.default()
    ours = _our_render(template, case)
    assert ours == _hf_render(hf_tokenizer, template.source, case)
    assert ours.count("<|im_start|>") >= 2


@pytest.mark.parametrize("enable_thinking", [True, False])
def test_enable_thinking_generation_prompt(enable_thinking: bool, hf_tokenizer: Any) -> None:
    case = {"messages": [{"role": "user", "content": "x"}], "enable_thinking": enable_thinking}
    ours = _our_render(ChatTemplate.default(), case)
    assert ours == _hf_render(hf_tokenizer, ChatTemplate.default().source, case)
    assert ours.endswith("<think>\n") == enable_thinking


def test_json_string_arguments_are_parsed_before_rendering(hf_tokenizer: Any) -> None:
    as_dict = CASES["parallel_tool_calls_and_results"]
    as_string = copy.deepcopy(as_dict)
    for call in as_string["messages"][2]["tool_calls"]:
        call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
    snapshot = copy.deepcopy(as_string)
    ours = _our_render(ChatTemplate.default(), as_string)
    assert ours == _hf_render(hf_tokenizer, ChatTemplate.default().source, as_dict)
    assert as_string == snapshot  # the caller's messages are not modified
    assert "<parameter=days>\n3\n</parameter>" in ours


@pytest.mark.parametrize(
    "arguments, message",
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")],
)
def test_bad_string_arguments_are_typed_errors(arguments: str, message: str) -> None:
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": arguments}}]},
    ]
    with pytest.raises(ChatTemplateError, match=message):
        ChatTemplate.default().render(messages)


@pytest.mark.parametrize(
    "messages, message",
    [
        ([], "non-empty"),
        ([{"role": "system", "content": "only system"}], "No user query"),
        ([{"role": "user", "content": "q"}, {"role": "system", "content": "late"}], "beginning"),
        ([{"role": "wizard", "content": "q"}, {"role": "user", "content": "q"}], "role"),
        (["not a dict"], "messages\\[0\\]"),
        ([{"role": "user", "content": 42}], "content type"),
    ],
)
def test_template_refusals_are_typed_errors(messages: Any, message: str) -> None:
    with pytest.raises(ChatTemplateError, match=message):
        ChatTemplate.default().render(messages)


def test_continue_final_message_matches_transformers(hf_tokenizer: Any) -> None:
    messages = [{"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Autumn moon"}]
    ours = ChatTemplate.default().render(messages, add_generation_prompt=False, continue_final_message=True)
    theirs = hf_tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    assert ours == theirs and ours.endswith("Autumn moon")


def test_from_dir_prefers_checkpoint_template(tmp_path: Path) -> None:
    assert ChatTemplate.from_dir(tmp_path).source == ChatTemplate.default().source
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages[0].content }}!"}))
    assert ChatTemplate.from_dir(tmp_path).render([{"role": "user", "content": "cfg"}]) == "cfg!"
    (tmp_path / "chat_template.jinja").write_text("jinja:{{ messages|length }}")
    assert ChatTemplate.from_dir(tmp_path).render([{"role": "user", "content": "x"}]) == "jinja:1"


def test_broken_template_source_is_a_typed_error() -> None:
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{% for %}")
