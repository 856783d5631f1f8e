"""Structured output and enforced tool choice end to end: the real engine on a tiny random checkpoint (its free
output is noise), the app on uvicorn and the unchanged SDKs on Chat Completions, Anthropic Messages and Responses,
streamed and not, thinking on (with a budget) and off. Anything valid here was made valid by the grammar."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anthropic
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field
from structured_cases import WEATHER, SimplePet

from qwen35.processor import Processor
from scripted_app import running_real_app

MODEL = "qwen3-5-4b"
ASK = [{"role": "user", "content": "Describe a pet."}]


class Owner(BaseModel):
    vip: bool
    level: int = Field(ge=1, le=5)


class Pet(BaseModel):
    kind: Literal["cat", "dog", "bird"]
    ok: bool
    age: int = Field(ge=0, le=30)
    tags: list[Literal["a", "b"]] = Field(max_length=3)
    owner: Owner
    nickname: Literal["rex", "tom"] | None


PET_SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["cat", "dog", "bird"]},
        "legs": {"type": "integer", "minimum": 0, "maximum": 8},
        "ok": {"type": "boolean"},
        "color": {"const": "red"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "maxItems": 2},
    },
    "required": ["kind", "legs", "ok", "color", "tags"],
    "additionalProperties": False,
    "$defs": {"tag": {"anyOf": [{"enum": ["x", "y"]}, {"type": "null"}]}},
}
TIME = {"type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}}, "required": ["zone"],
        "additionalProperties": False}
CHAT_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
]
THINK_OFF: dict[str, Any] = {"enable_thinking": False}
THINK_SHORT: dict[str, Any] = {"enable_thinking": True}  # with max_tokens 400 the budget shrinks to ~190 tokens


@dataclass
class Clients:
    openai: openai.OpenAI
    anthropic: anthropic.Anthropic
    processor: Processor


@pytest.fixture(scope="module")
def real(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    with running_real_app(tiny_checkpoint, tmp_path_factory.mktemp("structured")) as app:
        yield Clients(
            openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=app.secret, max_retries=0,
                          _strict_response_validation=True),
            anthropic.Anthropic(base_url=app.base_url, api_key=app.secret, max_retries=0,
                                _strict_response_validation=True),
            app.processor,
        )


# ---- JSON answers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("thinking", [THINK_OFF, THINK_SHORT], ids=["thinking-off", "thinking-on"])
def test_chat_parse_helper_gets_a_valid_model(real: Clients, thinking: dict[str, Any]) -> None:
    completion = real.openai.chat.completions.parse(
        model=MODEL, messages=ASK, response_format=Pet, max_completion_tokens=400, temperature=1.0, seed=3,
        extra_body=thinking,
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, Pet)
    assert Pet.model_validate_json(message.content or "") == message.parsed
    reasoning = getattr(message, "reasoning_content", None)
    assert bool(reasoning) == thinking["enable_thinking"]


def test_chat_json_schema_streamed_equals_collected(real: Clients) -> None:
    kwargs: dict[str, Any] = dict(
        model=MODEL, messages=ASK, max_completion_tokens=300, temperature=1.0, seed=11, extra_body=THINK_OFF,
        response_format={"type": "json_schema", "json_schema": {"name": "pet", "schema": PET_SCHEMA, "strict": True}},
    )
    whole = real.openai.chat.completions.create(**kwargs)
    chunks = list(real.openai.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    jsonschema.validate(json.loads(streamed), PET_SCHEMA)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"] == [whole.choices[0].finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_json_object_n3_each_sample_valid(real: Clients) -> None:
    completion = real.openai.chat.completions.create(
        model=MODEL, messages=ASK, max_completion_tokens=300, temperature=1.0, seed=1, n=3,
        response_format={"type": "json_object"}, extra_body=THINK_OFF,
    )
    grammar_prefix = real.processor.tokenizer.decode  # noqa: F841 - documents that outputs are model tokens
    for choice in completion.choices:
        text = choice.message.content or ""
        assert text.startswith("{")
        if choice.finish_reason == "stop":  # free strings in a noise model may run to the limit
            assert isinstance(json.loads(text), dict)
    assert any(c.finish_reason == "stop" for c in completion.choices)


@pytest.mark.parametrize("stream", [False, True], ids=["collected", "streamed"])
def test_anthropic_parse_and_output_config(real: Clients, stream: bool) -> None:
    if not stream:
        message = real.anthropic.messages.parse(
            model=MODEL, max_tokens=400, messages=ASK, output_format=SimplePet,  # type: ignore[arg-type]
            thinking={"type": "disabled"}, extra_body={"temperature": 1.0, "seed": 5},
        )
        assert message.stop_reason == "end_turn"
        assert isinstance(message.parsed_output, SimplePet)
        return
    with real.anthropic.messages.stream(
        model=MODEL, max_tokens=400, messages=ASK,  # type: ignore[arg-type]
        output_config={"format": {"type": "json_schema", "schema": PET_SCHEMA}},
        thinking={"type": "adaptive"}, extra_body={"temperature": 1.0, "seed": 5},
    ) as events:
        final = events.get_final_message()
    kinds = [block.type for block in final.content]
    assert kinds == ["thinking", "text"]
    jsonschema.validate(json.loads(final.content[1].text), PET_SCHEMA)  # type: ignore[union-attr]


def test_anthropic_beta_output_format_spelling(real: Clients) -> None:
    message = real.anthropic.messages.create(
        model=MODEL, max_tokens=300, messages=ASK,  # type: ignore[arg-type]
        thinking={"type": "disabled"},
        extra_body={"output_format": {"type": "json_schema", "schema": PET_SCHEMA}, "seed": 2, "temperature": 1.0},
    )
    jsonschema.validate(json.loads(message.content[0].text), PET_SCHEMA)  # type: ignore[union-attr]


@pytest.mark.parametrize("thinking", [THINK_OFF, THINK_SHORT], ids=["thinking-off", "thinking-on"])
def test_responses_parse_helper(real: Clients, thinking: dict[str, Any]) -> None:
    response = real.openai.responses.parse(
        model=MODEL, input="Describe a pet.", text_format=Pet, max_output_tokens=400, temperature=1.0,
        extra_body={**thinking, "seed": 9},
    )
    assert response.status == "completed"
    assert isinstance(response.output_parsed, Pet)
    kinds = [item.type for item in response.output]
    assert kinds == (["reasoning", "message"] if thinking["enable_thinking"] else ["message"])


def test_responses_json_schema_streamed(real: Clients) -> None:
    text = {"format": {"type": "json_schema", "name": "pet", "schema": PET_SCHEMA, "strict": True}}
    events = list(real.openai.responses.create(
        model=MODEL, input="Describe a pet.", text=text, max_output_tokens=300, temperature=1.0,  # type: ignore[arg-type]
        extra_body={**THINK_OFF, "seed": 4}, stream=True,
    ))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e for e in events if e.type == "response.completed"][0].response
    assert done.output_text == deltas
    jsonschema.validate(json.loads(deltas), PET_SCHEMA)
    assert done.text.format.type == "json_schema"  # echoed


# ---- tool choice -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["collected", "streamed"])
@pytest.mark.parametrize("choice", ["required", "named"])
def test_chat_tool_choice_is_enforced(real: Clients, choice: str, stream: bool) -> None:
    tool_choice: Any = "required" if choice == "required" else {"type": "function",
                                                                "function": {"name": "get_time"}}
    kwargs: dict[str, Any] = dict(model=MODEL, messages=ASK, tools=CHAT_TOOLS, tool_choice=tool_choice,
                                  max_completion_tokens=300, temperature=1.0, seed=21, extra_body=THINK_OFF)
    if stream:
        chunks = list(real.openai.chat.completions.create(**kwargs, stream=True))
        calls: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            for delta in chunk.choices[0].delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
            assert not (chunk.choices[0].delta.content or "").strip()
        finish = chunks[-1].choices[0].finish_reason
        pairs = [(c["name"], c["arguments"]) for c in calls.values()]
    else:
        completion = real.openai.chat.completions.create(**kwargs)
        message = completion.choices[0].message
        assert not (message.content or "").strip()
        finish = completion.choices[0].finish_reason
        pairs = [(c.function.name, c.function.arguments) for c in message.tool_calls or ()]
    assert finish == "tool_calls" and pairs
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in CHAT_TOOLS}
    for name, arguments in pairs:
        assert name in (["get_time"] if choice == "named" else schemas)
        jsonschema.validate(json.loads(arguments), schemas[name])
    if choice == "named":
        assert len(pairs) == 1


def test_chat_parallel_false_gives_exactly_one_call(real: Clients) -> None:
    for seed in range(3):
        completion = real.openai.chat.completions.create(
            model=MODEL, messages=ASK, tools=CHAT_TOOLS, tool_choice="required", parallel_tool_calls=False,
            max_completion_tokens=300, temperature=1.0, seed=seed, extra_body=THINK_OFF,
        )
        assert len(completion.choices[0].message.tool_calls or ()) == 1


def test_chat_required_with_thinking(real: Clients) -> None:
    completion = real.openai.chat.completions.create(
        model=MODEL, messages=ASK, tools=CHAT_TOOLS, tool_choice="required", max_completion_tokens=400,
        temperature=1.0, seed=8, extra_body=THINK_SHORT,
    )
    message = completion.choices[0].message
    assert getattr(message, "reasoning_content", None)
    assert completion.choices[0].finish_reason == "tool_calls" and message.tool_calls
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0  # type: ignore[union-attr]


def test_strict_tool_arguments_follow_schema_under_auto(real: Clients) -> None:
    # The noise model rarely opens a call by itself; logit_bias on <tool_call> makes it open one at once.
    tool_call = real.processor.special_ids.tool_call_start
    strict_tools = [{"type": "function", "function": {**t["function"], "strict": True}} for t in CHAT_TOOLS]
    completion = real.openai.chat.completions.create(
        model=MODEL, messages=ASK, tools=strict_tools, max_completion_tokens=200, temperature=1.0, seed=2,
        logit_bias={str(tool_call): 100}, extra_body=THINK_OFF,
    )
    calls = completion.choices[0].message.tool_calls or ()
    assert calls
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in CHAT_TOOLS}
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


@pytest.mark.parametrize("stream", [False, True], ids=["collected", "streamed"])
@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}], ids=["any", "tool"])
def test_anthropic_tool_choice_is_enforced(real: Clients, choice: dict[str, Any], stream: bool) -> None:
    tools = [{"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in CHAT_TOOLS]
    kwargs: dict[str, Any] = dict(model=MODEL, max_tokens=300, messages=ASK, tools=tools, tool_choice=choice,
                                  extra_body={"temperature": 1.0, "seed": 13})
    if stream:
        with real.anthropic.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = real.anthropic.messages.create(**kwargs)
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert uses and all(b.type in ("thinking", "tool_use") for b in message.content)  # thinking: server default
    for use in uses:
        assert use.name in ((choice.get("name"),) if choice["type"] == "tool" else ("get_weather", "get_time"))
        jsonschema.validate(use.input, WEATHER if use.name == "get_weather" else TIME)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}], ids=["required", "named"])
def test_responses_tool_choice_is_enforced(real: Clients, choice: Any) -> None:
    tools = [{"type": "function", "name": t["function"]["name"], "parameters": t["function"]["parameters"],
              "strict": True} for t in CHAT_TOOLS]
    response = real.openai.responses.create(
        model=MODEL, input="Describe a pet.", tools=tools, tool_choice=choice, max_output_tokens=300,  # type: ignore[arg-type]
        temperature=1.0, extra_body={**THINK_OFF, "seed": 17},
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls and all(item.type == "function_call" for item in response.output)
    for call in calls:
        assert call.name in (("get_weather",) if isinstance(choice, dict) else ("get_weather", "get_time"))
        jsonschema.validate(json.loads(call.arguments), WEATHER if call.name == "get_weather" else TIME)


# ---- refusals --------------------------------------------------------------------------------------------------


def test_unsupported_schema_features_are_named_on_every_api(real: Clients) -> None:
    schema = {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer"},
                                                       "uniqueItems": True}}}
    with pytest.raises(openai.BadRequestError) as chat:
        real.openai.chat.completions.create(
            model=MODEL, messages=ASK, max_completion_tokens=10,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    assert "uniqueItems" in chat.value.message and chat.value.body["param"] == "response_format.json_schema.schema"
    with pytest.raises(openai.BadRequestError) as responses:
        real.openai.responses.create(model=MODEL, input="x", max_output_tokens=16,
                                     text={"format": {"type": "json_schema", "name": "x", "schema": schema}})
    assert "uniqueItems" in responses.value.message
    with pytest.raises(anthropic.BadRequestError) as messages:
        real.anthropic.messages.create(model=MODEL, max_tokens=10, messages=ASK,  # type: ignore[arg-type]
                                       output_config={"format": {"type": "json_schema", "schema": schema}})
    assert "uniqueItems" in messages.value.message
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"not": {"type": "string"}}}}}}]
    with pytest.raises(openai.BadRequestError) as tool:
        real.openai.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=10, tools=tools,
                                            tool_choice="required")
    assert "'not'" in tool.value.message and tool.value.body["param"] == "tools[0]"
    # the server goes on serving
    ok = real.openai.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=5,
                                             extra_body=THINK_OFF)
    assert ok.choices[0].finish_reason == "length"
