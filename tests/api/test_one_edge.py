"""The one HTTP edge, checked across all four APIs: the same defaults and ranges, the product's extensions honoured
(or refused with a 400, never ignored), the same body handling, and the ledger holding every request before the
client hears its end, on every family and every ending (asserted on the engine request and the ledger, not on text).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scripted_app import AppHarness, running_app

MODEL = "qwen3-5-4b"
CHAT, COMPLETIONS, RESPONSES, MESSAGES = "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"
FAMILIES = (CHAT, COMPLETIONS, RESPONSES, MESSAGES)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    with running_app(tmp_path_factory.mktemp("one-edge")) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset(harness: AppHarness) -> None:
    harness.reset()


def minimal(path: str, text: str = "Hi") -> dict[str, Any]:
    """The smallest valid body of each API (Messages requires max_tokens: the product's default is sent)."""
    if path == CHAT:
        return {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if path == COMPLETIONS:
        return {"model": MODEL, "prompt": text}
    if path == RESPONSES:
        return {"model": MODEL, "input": text}
    return {"model": MODEL, "max_tokens": 4096, "messages": [{"role": "user", "content": text}]}


def post(harness: AppHarness, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {harness.secret}", "anthropic-version": "2023-06-01"}
    if isinstance(body, (bytes, str)):
        return httpx.post(f"{harness.base_url}{path}", content=body, headers={**headers, **kwargs}, timeout=30)
    return httpx.post(f"{harness.base_url}{path}", json=body, headers=headers, timeout=30)


def error_of(response: httpx.Response, path: str) -> dict[str, Any]:
    """The error object in the family's own envelope (param from OpenAI's field, or Anthropic's message prefix)."""
    body = response.json()
    if path == MESSAGES:
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        return {"message": body["error"]["message"], "param": body["error"]["message"].split(":")[0]}
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


@pytest.mark.parametrize("path", FAMILIES)
def test_omitted_fields_get_the_same_defaults_on_every_api(harness: AppHarness, path: str) -> None:
    response = post(harness, path, minimal(path))
    assert response.status_code == 200, response.text
    params = harness.last_params
    sampler = (params.temperature, params.top_p, params.top_k, params.min_p, params.presence_penalty,
               params.frequency_penalty, params.repetition_penalty, params.seed)
    assert sampler == (0.7, 0.95, 20, 0.0, 0.0, 0.0, 1.0, None)
    room = harness.engine.max_model_len - len(harness.last_prompt)
    assert params.max_tokens == min(4096, room) and params.logprobs is None


# (product name, bad value) -> every API rejects it with a 400 naming its own field
LIMITS = [
    ("temperature", 2.5), ("temperature", -0.1), ("top_p", 0), ("top_p", 1.5), ("top_k", 0), ("top_k", 201),
    ("top_k", 500), ("min_p", 1.1), ("presence_penalty", 2.1), ("frequency_penalty", -3), ("repetition_penalty", 0.05),
    ("repetition_penalty", 2.5), ("seed", -1), ("seed", 2147483648), ("max_tokens", 0), ("max_tokens", 32769),
    ("max_tokens", 100000), ("max_tokens", 1000000), ("stop", ["a", "b", "c", "d", "e"]),
]
SPELLING = {RESPONSES: {"max_tokens": "max_output_tokens"}, MESSAGES: {"stop": "stop_sequences"}}


@pytest.mark.parametrize("path", FAMILIES)
@pytest.mark.parametrize(("name", "value"), LIMITS, ids=[f"{n}={v!r}"[:30] for n, v in LIMITS])
def test_one_range_per_parameter_on_every_api(harness: AppHarness, path: str, name: str, value: Any) -> None:
    field = SPELLING.get(path, {}).get(name, name)
    response = post(harness, path, {**minimal(path), field: value})
    assert response.status_code == 400, response.text
    assert error_of(response, path)["param"] == field


@pytest.mark.parametrize("path", (CHAT, RESPONSES, MESSAGES))
@pytest.mark.parametrize("budget", (1023, 32769, 40000))
def test_thinking_budget_range_on_every_chat_api(harness: AppHarness, path: str, budget: int) -> None:
    response = post(harness, path, {**minimal(path), "thinking_budget": budget})
    assert response.status_code == 400 and error_of(response, path)["param"] == "thinking_budget", response.text
    if path == MESSAGES:  # the native spelling is held to the same range
        body = {**minimal(path), "max_tokens": 32768, "thinking": {"type": "enabled", "budget_tokens": budget}}
        response = post(harness, path, body)
        assert response.status_code == 400 and "budget_tokens" in error_of(response, path)["param"], response.text


@pytest.mark.parametrize("path", FAMILIES)
def test_sampler_extensions_reach_the_engine_on_every_api(harness: AppHarness, path: str) -> None:
    extensions = {"top_k": 7, "min_p": 0.1, "presence_penalty": 0.5, "frequency_penalty": -0.5,
                  "repetition_penalty": 1.2, "seed": 42}
    response = post(harness, path, {**minimal(path), **extensions, "temperature": 0.3, "top_p": 0.8})
    assert response.status_code == 200, response.text
    params = harness.last_params
    assert {name: getattr(params, name) for name in extensions} == extensions
    assert (params.temperature, params.top_p) == (0.3, 0.8)


def test_stop_extension_works_on_responses(harness: AppHarness) -> None:
    harness.say("one two STOP three")
    body = post(harness, RESPONSES, {**minimal(RESPONSES), "stop": ["STOP"], "enable_thinking": False}).json()
    assert body["output"][-1]["content"][0]["text"] == "one two "


@pytest.mark.parametrize("path", (CHAT, RESPONSES, MESSAGES))
def test_thinking_extensions_work_on_every_chat_api(harness: AppHarness, path: str) -> None:
    assert post(harness, path, {**minimal(path), "enable_thinking": False}).status_code == 200
    assert harness.last_params.thinking_budget is None and not harness.last_prompt_text().endswith("<think>\n")
    assert post(harness, path, {**minimal(path), "reasoning_effort": "low"}).status_code == 200
    assert harness.last_params.thinking_budget is not None
    assert harness.last_params.thinking_budget.max_thinking_tokens <= 1024
    assert post(harness, path, {**minimal(path), "thinking_budget": 2048}).status_code == 200
    assert harness.last_params.thinking_budget.max_thinking_tokens == 2048
    assert post(harness, path, {**minimal(path), "reasoning_effort": "none"}).status_code == 200
    assert harness.last_params.thinking_budget is None


@pytest.mark.parametrize("field", ("enable_thinking", "reasoning_effort", "thinking_budget"))
def test_completions_refuse_thinking_controls(harness: AppHarness, field: str) -> None:
    value = {"enable_thinking": True, "reasoning_effort": "low", "thinking_budget": 2048}[field]
    response = post(harness, COMPLETIONS, {**minimal(COMPLETIONS), field: value})
    assert response.status_code == 400 and error_of(response, COMPLETIONS)["param"] == field


def test_messages_refuses_stop_and_mixed_thinking_controls(harness: AppHarness) -> None:
    response = post(harness, MESSAGES, {**minimal(MESSAGES), "stop": ["x"]})
    assert response.status_code == 400 and "stop_sequences" in error_of(response, MESSAGES)["message"]
    body = {**minimal(MESSAGES), "thinking": {"type": "disabled"}, "thinking_budget": 2048}
    assert post(harness, MESSAGES, body).status_code == 400


@pytest.mark.parametrize("path", FAMILIES)
def test_lone_surrogate_is_a_400_and_the_server_goes_on(harness: AppHarness, path: str) -> None:
    raw = json.dumps(minimal(path, "a \ud83d b"))  # json.dumps escapes it as \ud83d
    response = post(harness, path, raw, **{"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "surrogate" in error_of(response, path)["message"]
    assert post(harness, path, minimal(path)).status_code == 200


@pytest.mark.parametrize("path", FAMILIES)
def test_body_handling_is_the_same_on_every_api(harness: AppHarness, path: str) -> None:
    for raw in (b"[1, 2]", b'"text"', b"{not json"):
        response = post(harness, path, raw, **{"content-type": "application/json"})
        assert response.status_code == 400 and "None" not in error_of(response, path)["message"], response.text
    no_content_type = post(harness, path, json.dumps(minimal(path)), **{"content-type": "text/plain"})
    assert no_content_type.status_code == 200, no_content_type.text
    nulls = {"stream": None, "temperature": None, "top_p": None}
    if path in (CHAT, COMPLETIONS):
        nulls["n"] = None
    assert post(harness, path, {**minimal(path), **nulls}).status_code == 200
    assert harness.last_params.temperature == 0.7


def test_count_tokens_over_the_context_is_a_count(harness: AppHarness) -> None:
    huge = "word " * 42000
    response = post(harness, "/v1/messages/count_tokens", {"model": MODEL, "messages": [{"role": "user", "content": huge}]})
    assert response.status_code == 200 and response.json()["input_tokens"] > harness.engine.max_model_len
    response = post(harness, "/v1/responses/input_tokens", {"model": MODEL, "input": huge})
    assert response.status_code == 200 and response.json()["input_tokens"] > harness.engine.max_model_len


@pytest.mark.parametrize("path", (*FAMILIES, "/v1/messages/count_tokens", "/v1/responses/input_tokens"))
def test_unknown_fields_are_refused_on_every_endpoint(harness: AppHarness, path: str) -> None:
    base = path if path in FAMILIES else (MESSAGES if "messages" in path else RESPONSES)
    body = minimal(base)
    if path == "/v1/messages/count_tokens":
        body.pop("max_tokens")
    assert post(harness, path, body).status_code == 200
    response = post(harness, path, {**body, "frobnicate": 1})
    assert response.status_code == 400 and error_of(response, base)["param"] == "frobnicate", response.text
    if path in (CHAT, RESPONSES, MESSAGES):  # a hosted-service-only field of their specs: accepted, no effect
        metadata = {"user_id": "u"} if path == MESSAGES else {"k": "v"}
        assert post(harness, path, {**body, "metadata": metadata}).status_code == 200


@pytest.mark.parametrize(("path", "field"), [(CHAT, "messages"), (COMPLETIONS, "prompt"), (RESPONSES, "input")])
def test_context_error_names_the_family_field(harness: AppHarness, path: str, field: str) -> None:
    response = post(harness, path, minimal(path, "word " * 42000))
    error = error_of(response, path)
    assert response.status_code == 400 and error["param"] == field and error["code"] == "context_length_exceeded"


# ---- the ledger before the end ---------------------------------------------------------------------------------


def _stream_ids(path: str, data: dict[str, Any]) -> str | None:
    if path == RESPONSES and data.get("type") == "response.created":
        return str(data["response"]["id"])
    if path == MESSAGES and data.get("type") == "message_start":
        return str(data["message"]["id"])
    if path in (CHAT, COMPLETIONS) and "id" in data:
        return str(data["id"])
    return None


def _is_end(path: str, line: str, data: dict[str, Any] | None) -> bool:
    if path in (CHAT, COMPLETIONS):
        return line == "data: [DONE]" or (data is not None and "error" in data)
    assert data is not None
    return data.get("type") in ("response.completed", "response.incomplete", "response.failed", "message_stop", "error")


def _records_at_end(harness: AppHarness, path: str, body: dict[str, Any]) -> list[Any]:
    """Stream `body`; at every end-of-answer frame, the ledger record of the request as it stood then."""
    request_id, seen = "", []
    headers = {"authorization": f"Bearer {harness.secret}", "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", f"{harness.base_url}{path}", json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = None if line == "data: [DONE]" else json.loads(line[len("data: "):])
            request_id = request_id or (_stream_ids(path, data) if data else None) or ""
            if _is_end(path, line, data):
                seen.append(harness.platform.get_usage(request_id))
    return seen


@pytest.mark.parametrize("path", FAMILIES)
def test_every_stream_is_in_the_ledger_before_its_end(harness: AppHarness, path: str) -> None:
    harness.say("A short answer.")
    records = _records_at_end(harness, path, {**minimal(path), "stream": True})
    assert records and all(r is not None and r.status == "completed" for r in records), records


@pytest.mark.parametrize("path", FAMILIES)
def test_a_stream_failing_mid_way_is_in_the_ledger_before_the_error(harness: AppHarness, path: str) -> None:
    harness.say("a long answer that the engine will not finish " * 3)
    harness.engine.fail_after_steps = 3
    records = _records_at_end(harness, path, {**minimal(path), "stream": True})
    assert records and all(r is not None and r.status == "failed" and r.output_tokens == 3 for r in records), records


@pytest.mark.parametrize("path", FAMILIES)
def test_a_failing_non_stream_request_is_recorded(harness: AppHarness, path: str) -> None:
    harness.say("a long answer that the engine will not finish " * 3)
    harness.engine.fail_after_steps = 2
    before = {r.request_id for r in harness.platform.list_usage(limit=10000)}
    response = post(harness, path, minimal(path))
    assert response.status_code == 500
    new = [r for r in harness.platform.list_usage(limit=10000) if r.request_id not in before]
    assert len(new) == 1 and new[0].status == "failed" and new[0].output_tokens == 2
