"""/v1/responses end to end on the real engine (tiny random checkpoint, `qwen35.engine.build`) with the unchanged
openai SDK (strict client): text, previous_response_id chains, function_call_output round trip, input token
counts equal to the prompt the engine ran, and the thinking budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from scripted_app import running_real_app

MODEL = "qwen3-5-4b"
NO_THINKING = {"effort": "none"}


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    with running_real_app(tiny_checkpoint, tmp_path_factory.mktemp("real-responses")) as app:
        yield openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=app.secret, max_retries=0,
                            _strict_response_validation=True)


def test_chain_grows_the_prompt_by_the_previous_turn(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="Hello.", max_output_tokens=16, temperature=0,
                                    reasoning=NO_THINKING)
    assert first.usage.output_tokens > 0 and first.status in ("completed", "incomplete")
    counted = client.responses.input_tokens.count(model=MODEL, input="And then?", previous_response_id=first.id,
                                                  reasoning=NO_THINKING)
    with client.responses.stream(model=MODEL, input="And then?", previous_response_id=first.id, max_output_tokens=16,
                                 temperature=0, reasoning=NO_THINKING) as stream:
        events = list(stream)
    second = stream.get_final_response() if events[-1].type == "response.completed" else events[-1].response
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens == counted.input_tokens
    # the second prompt holds the first turn (its input and its answer) before the new input
    assert second.usage.input_tokens > first.usage.input_tokens
    assert client.responses.retrieve(second.id).output_text == second.output_text


def test_function_call_output_round_trip(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "lookup", "parameters": {
        "type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}, "strict": False}
    history = [
        {"role": "user", "content": "Look up 'sky'."},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"word": "sky"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "blue"},
    ]
    counted = client.responses.input_tokens.count(model=MODEL, input=history, tools=[tool], reasoning=NO_THINKING)
    response = client.responses.create(model=MODEL, input=history, tools=[tool], max_output_tokens=16,
                                       temperature=0, reasoning=NO_THINKING)
    assert response.usage.input_tokens == counted.input_tokens
    assert response.status in ("completed", "incomplete")


def test_thinking_budget_is_never_exceeded(client: openai.OpenAI) -> None:
    max_tokens = 96
    response = client.responses.create(model=MODEL, input="Think.", max_output_tokens=max_tokens, temperature=0,
                                       extra_body={"thinking_budget": 1024})
    reasoning_tokens = response.usage.output_tokens_details.reasoning_tokens
    # the 1024 budget is shrunk to fit max_output_tokens, keeping min(1024, max // 2) tokens for the answer
    assert 0 < reasoning_tokens <= max_tokens - max_tokens // 2
    assert response.output[0].type == "reasoning" and response.usage.output_tokens <= max_tokens
