"""POST /v1/messages and count_tokens through the unchanged anthropic SDK (default and strict clients) and raw
HTTP, on the real app and serving core over a scripted engine (output text chosen per test)."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import pytest

from scripted_app import TOOL_CALL_TEXT, AppHarness, assert_matches_spec

MODEL = "qwen3-5-4b"
WEATHER = {
    "name": "get_weather",
    "description": "Weather forecast",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
USER = [{"role": "user", "content": "Hi"}]


def _sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs; asserts every event has an `event:` line equal to its data's type."""
    events = []
    for frame in response.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        name, data = lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])
        assert data["type"] == name
        events.append((name, data))
    return events


def _raw(harness: AppHarness, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    base_headers = {"x-api-key": harness.secret, "anthropic-version": "2023-06-01"}
    return httpx.post(f"{harness.base_url}/v1/messages", json=body, headers={**base_headers, **(headers or {})}, timeout=30)


def test_text_with_thinking(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.think_then_say("Let me think.", "Hello there!")
    harness.engine.num_cached_tokens = 4
    message = client.messages.create(model=MODEL, max_tokens=2000, messages=USER)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Let me think." and message.content[0].signature
    assert message.content[1].text == "Hello there!"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    prompt = harness.last_prompt
    assert message.usage.input_tokens == len(prompt) - 4 and message.usage.cache_read_input_tokens == 4
    completion = harness.tokenizer.encode("Let me think.\n</think>\n\nHello there!")
    assert message.usage.output_tokens == len(completion) + 1  # + the end-of-turn token
    assert message._request_id
    record = harness.platform.get_usage(message.id)
    assert record is not None and record.endpoint == "messages" and record.status == "completed"
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens) == (len(prompt), 4, len(completion) + 1)


def test_stream_raw_and_helper_agree_with_non_stream(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.think_then_say("Plan.", "Streamed answer.")
    created = client.messages.create(model=MODEL, max_tokens=2000, messages=USER)
    raw = list(client.messages.create(model=MODEL, max_tokens=2000, messages=USER, stream=True))
    types = [e.type for e in raw]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert [e.index for e in raw if e.type == "content_block_start"] == [0, 1]
    with client.messages.stream(model=MODEL, max_tokens=2000, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Streamed answer."
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in created.content]
    assert final.usage.output_tokens == created.usage.output_tokens
    assert final.usage.input_tokens == created.usage.input_tokens


def test_stream_wire_framing(harness: AppHarness) -> None:
    harness.think_then_say("Plan.", "Hi.")
    response = _raw(harness, {"model": MODEL, "max_tokens": 2000, "messages": USER, "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"]
    events = _sse(response)
    names = [name for name, _ in events if name != "ping"]
    collapsed = [name for i, name in enumerate(names) if i == 0 or name != names[i - 1]]  # runs of deltas -> one
    assert collapsed == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]
    deltas = [(data["index"], data["delta"]["type"]) for name, data in events if name == "content_block_delta"]
    assert deltas[-1][1] == "text_delta" and {i for i, _ in deltas} == {0, 1}
    block0 = [kind for i, kind in deltas if i == 0]
    assert block0[-1] == "signature_delta" and set(block0[:-1]) == {"thinking_delta"}
    assert ("ping", {"type": "ping"}) in events
    start_usage = events[0][1]["message"]["usage"]
    final_usage = next(data for name, data in events if name == "message_delta")["usage"]
    assert final_usage["output_tokens"] >= start_usage["output_tokens"]
    assert "[DONE]" not in response.text


def test_tool_use_round_trip(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.think_then_say("Need weather.", TOOL_CALL_TEXT)
    first = client.messages.create(model=MODEL, max_tokens=2000, messages=USER, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    tool = first.content[-1]
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.input == {"city": "Paris", "days": 3}
    with client.messages.stream(model=MODEL, max_tokens=2000, messages=USER, tools=[WEATHER]) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[-1].input == {"city": "Paris", "days": 3}

    harness.think_then_say("Use the result.", "It is 18C in Paris.")
    history = [
        *USER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "18C"}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=2000, messages=history, tools=[WEATHER])
    assert second.content[-1].text == "It is 18C in Paris." and second.stop_reason == "end_turn"
    prompt_text = harness.tokenizer.decode(harness.last_prompt)
    assert "<tool_response>\n18C\n</tool_response>" in prompt_text
    assert "<function=get_weather>" in prompt_text  # the call was replayed in the assistant turn


def test_thinking_controls_reach_the_engine(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.think_then_say("Short.", "Done.")
    budgeted = client.messages.create(
        model=MODEL, max_tokens=8000, messages=USER, thinking={"type": "enabled", "budget_tokens": 1500}
    )
    params = harness.last_params
    assert params.thinking_budget is not None and params.thinking_budget.max_thinking_tokens <= 1500
    assert budgeted.content[0].type == "thinking"
    disabled = client.messages.create(model=MODEL, max_tokens=100, messages=USER, thinking={"type": "disabled"})
    assert [b.type for b in disabled.content] == ["text"] and disabled.content[0].text == "Done."
    assert harness.tokenizer.decode(harness.last_prompt).endswith("<think>\n\n</think>\n\n")


def test_stop_sequence_and_max_tokens(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.say("one two END three")
    stopped = client.messages.create(
        model=MODEL, max_tokens=100, messages=USER, thinking={"type": "disabled"}, stop_sequences=["END"]
    )
    assert (stopped.stop_reason, stopped.stop_sequence, stopped.content[0].text) == ("stop_sequence", "END", "one two ")
    harness.say("a b c d e f g h i j k l m n o p")
    cut = client.messages.create(model=MODEL, max_tokens=3, messages=USER, thinking={"type": "disabled"})
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3


def test_count_tokens_equals_the_prompt(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.think_then_say("x", "y")
    kwargs: dict[str, Any] = {"model": MODEL, "messages": USER, "system": "Be nice.", "tools": [WEATHER]}
    counted = client.messages.count_tokens(**kwargs)
    client.messages.create(max_tokens=2000, **kwargs)
    assert counted.input_tokens == len(harness.last_prompt)


def test_legacy_headers_and_sampling_via_extra_body(harness: AppHarness) -> None:
    harness.think_then_say("x", "legacy ok")
    legacy = anthropic.Anthropic(
        base_url=harness.base_url, api_key=None, max_retries=0,
        default_headers={"x-api-key": harness.secret, "anthropic-version": "2023-06-01"},
    )
    message = legacy.messages.create(
        model="Qwen/Qwen3.5-4B", max_tokens=2000, messages=USER, extra_body={"temperature": 0.0, "top_k": 5}
    )
    assert message.content[-1].text == "legacy ok" and message.model == "Qwen/Qwen3.5-4B"
    params = harness.last_params
    assert params.temperature == 0.0 and params.top_k == 5


def test_cache_control_and_beta_headers_are_tolerated(harness: AppHarness) -> None:
    harness.think_then_say("x", "ok")
    body = {
        "model": MODEL, "max_tokens": 2000,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
        "metadata": {"user_id": "u1"},
    }
    response = _raw(harness, body, {"anthropic-beta": "prompt-caching-2024-07-31,unknown-beta-2099"})
    assert response.status_code == 200 and response.json()["content"][-1]["text"] == "ok"
    assert_matches_spec("anthropic", "Message", response.json())


@pytest.mark.parametrize(
    ("body", "headers", "status", "error_type", "message"),
    [
        ({"model": MODEL, "messages": USER}, {}, 400, "invalid_request_error", "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 10, "messages": USER}, {"anthropic-version": ""}, 400,
         "invalid_request_error", "anthropic-version"),
        ({"model": "claude-x", "max_tokens": 10, "messages": USER}, {}, 404, "not_found_error", "model: claude-x"),
        ({"model": MODEL, "max_tokens": 10, "messages": USER}, {"x-api-key": "sk-wrong"}, 401,
         "authentication_error", "Incorrect API key"),
        ({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "image",
          "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]}]}, {}, 400,
         "invalid_request_error", "image"),
    ],
)
def test_error_envelope(harness: AppHarness, body: dict, headers: dict, status: int, error_type: str, message: str) -> None:
    response = _raw(harness, body, headers)
    assert response.status_code == status
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == error_type
    assert message in payload["error"]["message"]
    assert payload["request_id"] == response.headers["request-id"]
    assert "detail" not in payload
    assert_matches_spec("anthropic", "ErrorResponse", payload)


def test_missing_version_header_is_400(harness: AppHarness) -> None:
    response = httpx.post(
        f"{harness.base_url}/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": USER},
        headers={"authorization": f"Bearer {harness.secret}"},
    )
    assert response.status_code == 400 and "anthropic-version" in response.json()["error"]["message"]


def test_sdk_error_classes(client: anthropic.Anthropic, harness: AppHarness) -> None:
    with pytest.raises(anthropic.AuthenticationError) as auth:
        anthropic.Anthropic(base_url=harness.base_url, api_key="sk-nope", max_retries=0).messages.create(
            model=MODEL, max_tokens=5, messages=USER
        )
    assert auth.value.type == "authentication_error" and auth.value.request_id
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=5, messages=USER)
    harness.engine.overloaded = True
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(model=MODEL, max_tokens=5, messages=USER)
    assert overloaded.value.status_code == 529 and overloaded.value.type == "overloaded_error"
    assert overloaded.value.response.headers.get("retry-after")


def test_credit_balance_error_is_400(harness: AppHarness) -> None:
    harness.platform.create_account("broke", credit_limited=True)
    secret = harness.new_key("broke-key", account="broke")
    client = anthropic.Anthropic(base_url=harness.base_url, api_key=secret, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=5, messages=USER)
    assert info.value.type == "invalid_request_error" and "credit balance is too low" in str(info.value.message)


def test_error_after_stream_began_is_an_error_event(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.think_then_say("thinking for a while here", "never")
    harness.engine.fail_after_steps = 3
    response = _raw(harness, {"model": MODEL, "max_tokens": 2000, "messages": USER, "stream": True})
    events = _sse(response)
    assert events[0][0] == "message_start" and events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    with pytest.raises(anthropic.APIStatusError) as info:
        list(client.messages.create(model=MODEL, max_tokens=2000, messages=USER, stream=True))
    assert info.value.status_code == 200 and info.value.type == "api_error"
    record = harness.platform.list_usage(key_id=harness.key.key_id, limit=1)[0]
    assert record.status == "failed" and record.output_tokens == 3  # partial work is still billed


def test_models_anthropic_shape(client: anthropic.Anthropic, harness: AppHarness) -> None:
    raw = httpx.get(f"{harness.base_url}/v1/models", headers={"x-api-key": harness.secret, "anthropic-version": "2023-06-01"})
    assert raw.json()["has_more"] is False
    assert_matches_spec("anthropic", "ListResponse_ModelInfo_", raw.json())
    models = list(client.models.list())
    assert [m.id for m in models] == [MODEL] and models[0].lifecycle == "active"
    assert client.models.retrieve("qwen3.5-4b").id == MODEL
    with pytest.raises(anthropic.NotFoundError) as info:
        client.models.retrieve("claude-x")
    assert info.value.type == "not_found_error"


def test_ping_keepalives_while_the_model_is_silent(harness: AppHarness) -> None:
    import dataclasses

    settings = harness.app.state.settings
    harness.app.state.settings = dataclasses.replace(settings, keepalive_s=0.02)
    harness.think_then_say("slow", "reply")
    harness.engine.step_delay_s = 0.1
    try:
        events = _sse(_raw(harness, {"model": MODEL, "max_tokens": 2000, "messages": USER, "stream": True}))
    finally:
        harness.app.state.settings = settings
    names = [name for name, _ in events]
    first_delta, last_delta = names.index("content_block_delta"), len(names) - 1 - names[::-1].index("content_block_delta")
    assert "ping" in names[first_delta:last_delta]  # keep-alives between deltas, not only the opening one
    assert names[-1] == "message_stop"


def test_client_disconnect_aborts_and_bills_the_partial_work(harness: AppHarness) -> None:
    harness.think_then_say("a very long chain of thought " * 20, "never sent")
    harness.engine.step_delay_s = 0.02
    body = {"model": MODEL, "max_tokens": 2000, "messages": USER, "stream": True}
    headers = {"x-api-key": harness.secret, "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", f"{harness.base_url}/v1/messages", json=body, headers=headers, timeout=30) as response:
        seen = 0
        for line in response.iter_lines():
            seen += line.startswith("event: content_block_delta")
            if seen >= 3:
                break
    deadline = time.monotonic() + 10
    while not harness.engine.aborted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert harness.engine.aborted
    while time.monotonic() < deadline:
        record = harness.platform.list_usage(key_id=harness.key.key_id, limit=1)[0]
        if record.status == "cancelled":
            break
        time.sleep(0.02)
    assert record.status == "cancelled" and 3 <= record.output_tokens < 100
