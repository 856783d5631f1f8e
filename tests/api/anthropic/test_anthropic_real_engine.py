"""End to end on the real engine (tiny random checkpoint, `qwen35.engine.build`): Anthropic Messages with the
unchanged anthropic SDK, and the same request sent to Chat Completions, Anthropic Messages and Responses at
temperature 0 giving the same tokens and the same usage numbers mapped to each family's fields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from qwen35.processor import Processor
from scripted_app import running_real_app

MODEL = "qwen3-5-4b"
QUESTION = "Name a colour."


@dataclass
class Clients:
    anthropic: anthropic.Anthropic
    openai: openai.OpenAI
    processor: Processor


@pytest.fixture(scope="module")
def real(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    with running_real_app(tiny_checkpoint, tmp_path_factory.mktemp("real-anthropic")) as app:
        yield Clients(
            anthropic.Anthropic(base_url=app.base_url, api_key=app.secret, max_retries=0,
                                _strict_response_validation=True),
            openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=app.secret, max_retries=0,
                          _strict_response_validation=True),
            app.processor,
        )


def _three_ways(real: Clients, thinking: str, max_tokens: int) -> tuple[Any, Any, Any]:
    """The same conversation, sampling and thinking setting through all three chat-like APIs."""
    system = "You are terse."
    chat = real.openai.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": system}, {"role": "user", "content": QUESTION}],
        max_completion_tokens=max_tokens, temperature=0, reasoning_effort=thinking,  # type: ignore[arg-type]
    )
    thinking_config: dict[str, Any] = {"type": "disabled"} if thinking == "none" else {"type": "adaptive"}
    extra: dict[str, Any] = {"temperature": 0}
    if thinking != "none":
        extra["output_config"] = {"effort": thinking}
    message = real.anthropic.messages.create(
        model=MODEL, system=system, messages=[{"role": "user", "content": QUESTION}], max_tokens=max_tokens,
        thinking=thinking_config, extra_body=extra,  # type: ignore[arg-type]
    )
    response = real.openai.responses.create(
        model=MODEL, instructions=system, input=QUESTION, max_output_tokens=max_tokens, temperature=0,
        reasoning={"effort": thinking},  # type: ignore[typeddict-item]
    )
    return chat, message, response


@pytest.mark.parametrize(("thinking", "max_tokens"), [("none", 16), ("low", 48)])
def test_same_request_same_tokens_and_usage_on_all_three_apis(real: Clients, thinking: str, max_tokens: int) -> None:
    chat, message, response = _three_ways(real, thinking, max_tokens)
    choice = chat.choices[0]
    answer = choice.message.content or ""
    reasoning = getattr(choice.message, "reasoning_content", None) or ""
    # text: identical answer and reasoning
    assert "".join(b.text for b in message.content if b.type == "text") == answer == response.output_text
    assert "".join(b.thinking for b in message.content if b.type == "thinking") == reasoning
    reasoning_items = [c.text for item in response.output if item.type == "reasoning" for c in item.content or []]
    assert "".join(reasoning_items) == reasoning
    if thinking == "none":
        assert not reasoning
    # usage: the same numbers under each family's names (cache hits may differ between calls: compare totals)
    chat_usage, msg_usage, resp_usage = chat.usage, message.usage, response.usage
    anthropic_input = msg_usage.input_tokens + msg_usage.cache_read_input_tokens + msg_usage.cache_creation_input_tokens
    assert chat_usage.prompt_tokens == anthropic_input == resp_usage.input_tokens
    assert chat_usage.completion_tokens == msg_usage.output_tokens == resp_usage.output_tokens
    reasoning_tokens = chat_usage.completion_tokens_details.reasoning_tokens
    assert reasoning_tokens == msg_usage.output_tokens_details.thinking_tokens
    assert reasoning_tokens == resp_usage.output_tokens_details.reasoning_tokens
    # stop reasons agree
    truncated = choice.finish_reason == "length"
    assert (message.stop_reason == "max_tokens") == truncated == (response.status == "incomplete")


def test_thinking_budget_is_never_exceeded(real: Clients) -> None:
    max_tokens = 96
    message = real.anthropic.messages.create(
        model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": QUESTION}],
        thinking={"type": "adaptive"}, extra_body={"temperature": 0, "output_config": {"effort": "low"}},
    )
    thinking_tokens = message.usage.output_tokens_details.thinking_tokens
    # effort low = 1024 tokens, shrunk to fit max_tokens with min(1024, max_tokens // 2) kept for the answer
    assert thinking_tokens <= max_tokens - max_tokens // 2
    assert message.usage.output_tokens <= max_tokens
    assert message.content[0].type == "thinking" and message.content[0].signature


def test_stream_and_count_tokens_on_the_real_engine(real: Clients) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "system": "Be brief.",
        "thinking": {"type": "disabled"},  # the thinking setting changes the prompt's tail, so it counts too
    }
    counted = real.anthropic.messages.count_tokens(**kwargs)
    with real.anthropic.messages.stream(max_tokens=24, extra_body={"temperature": 0}, **kwargs) as stream:
        final = stream.get_final_message()
    usage = final.usage
    assert counted.input_tokens == usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    created = real.anthropic.messages.create(max_tokens=24, extra_body={"temperature": 0}, **kwargs)
    assert [b.model_dump() for b in created.content] == [b.model_dump() for b in final.content]


def test_tool_result_round_trip_on_the_real_engine(real: Clients) -> None:
    tool = {"name": "lookup", "description": "Look a word up", "input_schema": {
        "type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}
    history = [
        {"role": "user", "content": "Look up 'sky'."},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should call lookup.", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"word": "sky"}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "blue"}]},
    ]
    counted = real.anthropic.messages.count_tokens(model=MODEL, messages=history, tools=[tool],
                                                   thinking={"type": "disabled"})
    message = real.anthropic.messages.create(model=MODEL, max_tokens=16, messages=history, tools=[tool],
                                             thinking={"type": "disabled"}, extra_body={"temperature": 0})
    usage = message.usage
    assert counted.input_tokens == usage.input_tokens + usage.cache_read_input_tokens
    assert message.stop_reason in ("end_turn", "max_tokens", "tool_use")
