"""/v1/responses through the unchanged openai SDK (default and strict clients, raw streams and `.stream()`) and raw
HTTP, on the real app and serving core over a scripted engine; stored responses in the platform store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from scripted_app import TOOL_CALL_TEXT, AppHarness, assert_matches_spec, build_app, running_app, serve

MODEL = "qwen3-5-4b"
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather forecast",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
    "strict": False,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("responses-app")


@pytest.fixture(scope="module")
def harness(data_dir: Path) -> Iterator[AppHarness]:
    with running_app(data_dir) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset_engine(harness: AppHarness) -> None:
    harness.reset()


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def client(request: pytest.FixtureRequest, harness: AppHarness) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{harness.base_url}/v1", api_key=harness.secret, max_retries=0,
        _strict_response_validation=request.param,
    )


def _raw_stream(harness: AppHarness, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{harness.base_url}/v1/responses", json={**body, "stream": True},
        headers={"authorization": f"Bearer {harness.secret}"}, timeout=30,
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in response.text
    events = []
    for frame in response.text.split("\n\n"):
        if frame.strip():
            name_line, data_line = frame.split("\n")
            data = json.loads(data_line[len("data: ") :])
            assert name_line == f"event: {data['type']}"
            events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        assert_matches_spec("openai", "ResponseStreamEvent", event)
    return events


def test_text_with_reasoning(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("Think first.", "Hello there!")
    harness.engine.num_cached_tokens = 3
    response = client.responses.create(model=MODEL, input="Hi", instructions="Be kind.")
    assert response.status == "completed" and response.output_text == "Hello there!"
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].content[0].text == "Think first."
    prompt = harness.last_prompt
    usage = response.usage
    completion = harness.tokenizer.encode("Think first.\n</think>\n\nHello there!")
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (len(prompt), 3)
    assert usage.output_tokens == len(completion) + 1 and usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert 0 < usage.output_tokens_details.reasoning_tokens <= usage.output_tokens
    assert "Be kind." in harness.last_prompt_text()
    record = harness.platform.get_usage(response.id)
    assert record is not None and record.endpoint == "responses" and record.input_tokens == len(prompt)
    stored = client.responses.retrieve(response.id)
    assert stored.model_dump() == response.model_dump()
    assert_matches_spec("openai", "Response", stored.model_dump(mode="json", exclude_unset=True))


def test_stream_raw_and_helper(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("Plan.", "Streamed.")
    events = _raw_stream(harness, {"model": MODEL, "input": "Hi"})
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    done_items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert events[-1]["response"]["output"] == done_items
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == next(e["text"] for e in events if e["type"] == "response.output_text.done") == "Streamed."
    assert all("usage" not in e["response"] for e in events[:2]) and events[-1]["response"]["usage"]["total_tokens"] > 0

    raw = list(client.responses.create(model=MODEL, input="Hi", stream=True))
    assert [e.type for e in raw] == types
    with client.responses.stream(model=MODEL, input="Hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Streamed."
    assert client.responses.retrieve(final.id).output_text == "Streamed."


def test_function_call_round_trip(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("Need weather.", TOOL_CALL_TEXT)
    first = client.responses.create(model=MODEL, input="Weather in Paris?", tools=[TOOL])
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id
    assert json.loads(call.arguments) == {"city": "Paris", "days": 3}
    with client.responses.stream(model=MODEL, input="Weather in Paris?", tools=[TOOL]) as stream:
        streamed = stream.get_final_response()
    assert json.loads(streamed.output[-1].arguments) == {"city": "Paris", "days": 3}

    harness.think_then_say("Answer now.", "It is 18C.")
    second = client.responses.create(
        model=MODEL, previous_response_id=first.id, tools=[TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}],
    )
    assert second.output_text == "It is 18C." and second.previous_response_id == first.id
    prompt = harness.last_prompt_text()
    assert "Weather in Paris?" in prompt and "<function=get_weather>" in prompt
    assert "<tool_response>\n18C\n</tool_response>" in prompt

    # the same turn replayed statelessly (items in the input) renders the same prompt
    replay = [{"role": "user", "content": "Weather in Paris?"}, *[i.model_dump(exclude_none=True) for i in first.output],
              {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}]
    client.responses.create(model=MODEL, input=replay, tools=[TOOL], store=False)
    assert harness.last_prompt_text() == prompt


def test_chain_does_not_carry_instructions(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("r", "Nice to meet you, Bob.")
    first = client.responses.create(model=MODEL, input="My name is Bob.", instructions="SYSTEM-A")
    harness.think_then_say("r", "Your name is Bob.")
    second = client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
    prompt = harness.last_prompt_text()
    assert "My name is Bob." in prompt and "Nice to meet you, Bob." in prompt and "SYSTEM-A" not in prompt
    third = client.responses.create(model=MODEL, input="Again?", previous_response_id=second.id)
    assert third.status == "completed" and "What is my name?" in harness.last_prompt_text()
    items = client.responses.input_items.list(third.id, order="asc").data
    assert [i.role for i in items if i.type == "message"] == ["user", "assistant", "user", "assistant", "user"]
    assert items[0].content[0].text == "My name is Bob." and items[-1].content[0].text == "Again?"
    assert len({i.id for i in items}) == len(items)


def test_store_false_scoping_and_delete(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("r", "ok")
    ephemeral = client.responses.create(model=MODEL, input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(ephemeral.id)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, input="y", previous_response_id=ephemeral.id)
    assert info.value.code == "previous_response_not_found" and info.value.param == "previous_response_id"

    kept = client.responses.create(model=MODEL, input="x")
    other = openai.OpenAI(base_url=f"{harness.base_url}/v1", api_key=harness.new_key(), max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(kept.id)
    with pytest.raises(openai.BadRequestError):
        other.responses.create(model=MODEL, input="y", previous_response_id=kept.id)
    client.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(kept.id)


def test_stored_responses_survive_a_restart(harness: AppHarness, data_dir: Path) -> None:
    harness.think_then_say("r", "persisted")
    client = openai.OpenAI(base_url=f"{harness.base_url}/v1", api_key=harness.secret, max_retries=0)
    response = client.responses.create(model=MODEL, input="remember")
    restarted = build_app(data_dir)  # a new process: new app, core and platform on the same store
    restarted.think_then_say("r", "again")
    with serve(restarted.app) as base_url:
        again = openai.OpenAI(base_url=f"{base_url}/v1", api_key=harness.secret, max_retries=0)
        assert again.responses.retrieve(response.id).output_text == "persisted"
        follow = again.responses.create(model=MODEL, input="and?", previous_response_id=response.id)
        assert follow.output_text == "again"
        assert "remember" in restarted.last_prompt_text()
    restarted.platform.close()


def test_max_output_tokens_gives_incomplete(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.say(" ".join(["word"] * 40))
    response = client.responses.create(model=MODEL, input="x", max_output_tokens=16, reasoning={"effort": "none"})
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 16
    events = _raw_stream(harness, {"model": MODEL, "input": "x", "max_output_tokens": 16, "reasoning": {"effort": "none"}})
    assert events[-1]["type"] == "response.incomplete"
    with pytest.raises(RuntimeError):
        with client.responses.stream(model=MODEL, input="x", max_output_tokens=16, reasoning={"effort": "none"}) as s:
            s.get_final_response()


def test_reasoning_controls(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("hidden", "plain")
    none = client.responses.create(model=MODEL, input="x", reasoning={"effort": "none"})
    assert [i.type for i in none.output] == ["message"]
    assert harness.last_prompt_text().endswith("<think>\n\n</think>\n\n")
    client.responses.create(model=MODEL, input="x", reasoning={"effort": "low"}, max_output_tokens=8000)
    assert harness.last_params.thinking_budget.max_thinking_tokens <= 1024
    client.responses.create(model=MODEL, input="x", max_output_tokens=8000, extra_body={"thinking_budget": 2048})
    assert harness.last_params.thinking_budget.max_thinking_tokens <= 2048
    summarized = client.responses.create(model=MODEL, input="x", reasoning={"effort": "medium", "summary": "auto"})
    assert summarized.output[0].summary[0].text == "hidden"


def test_logprobs_included(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("r", "Hi there")
    response = client.responses.create(
        model=MODEL, input="x", include=["message.output_text.logprobs"], top_logprobs=1
    )
    logprobs = response.output[-1].content[0].logprobs
    assert logprobs and "".join(lp.token for lp in logprobs).strip() == "Hi there"
    assert all(len(lp.top_logprobs) == 1 for lp in logprobs)


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "gpt-x", "input": "x"}, 404, "model", "model_not_found"),
        ({"model": MODEL, "input": "x", "temperature": 5}, 400, "temperature", "invalid_value"),
        ({"model": MODEL, "input": "x", "previous_response_id": "resp_nope"}, 400, "previous_response_id",
         "previous_response_not_found"),
        ({"model": MODEL, "input": [{"type": "computer_call_output", "call_id": "c"}]}, 400, "input[0].type", None),
        ({"model": MODEL, "input": "x", "tools": [{"type": "web_search"}]}, 400, "tools[0]", "web_search_unavailable"),
        ({"model": MODEL, "input": "x", "max_output_tokens": 32769}, 400, "max_output_tokens", "invalid_value"),
    ],
)
def test_error_envelope(harness: AppHarness, body: dict, status: int, param: str, code: str | None) -> None:
    response = httpx.post(f"{harness.base_url}/v1/responses", json=body, headers={"authorization": f"Bearer {harness.secret}"})
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["code"] == code
    assert_matches_spec("openai", "ErrorResponse", response.json())


def test_auth_required(harness: AppHarness) -> None:
    response = httpx.post(f"{harness.base_url}/v1/responses", json={"model": MODEL, "input": "x"})
    assert response.status_code == 401 and response.json()["error"]["type"] == "invalid_request_error"
    for method, path in (("GET", "/v1/responses/resp_1"), ("DELETE", "/v1/responses/resp_1")):
        assert httpx.request(method, f"{harness.base_url}{path}").status_code == 401


def test_failure_after_stream_began(harness: AppHarness) -> None:
    harness.think_then_say("a long enough chain of thought", "never")
    harness.engine.fail_after_steps = 3
    events = _raw_stream(harness, {"model": MODEL, "input": "x"})
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"
    record = harness.platform.list_usage(key_id=harness.key.key_id, limit=1)[0]
    assert record.status == "failed" and record.output_tokens == 3


def test_input_tokens_count(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("r", "ok")
    counted = client.responses.input_tokens.count(model=MODEL, input="count me", instructions="sys", tools=[TOOL])
    client.responses.create(model=MODEL, input="count me", instructions="sys", tools=[TOOL])
    assert counted.input_tokens == len(harness.last_prompt)
