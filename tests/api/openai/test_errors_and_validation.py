"""Errors in the OpenAI envelope: auth, unknown model / URL, every parameter's range and type (400 naming the
param, never a 422), context length, overload, unsupported content, and validation of error bodies."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

MODEL = "qwen3-5-4b"
USER = [{"role": "user", "content": "Hi"}]


def post(oai: Any, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    auth = {"Authorization": f"Bearer {oai.secret}"} if headers is None else headers
    return httpx.post(f"{oai.base_url}{path}", json=body, headers=auth, timeout=30)


def assert_envelope(response: httpx.Response, status: int, param: str | None = "any") -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    if param != "any":
        assert body["error"]["param"] == param, body
    return body["error"]


def test_missing_and_bad_keys(oai: Any, validate_schema: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-q35-nope"}, {"x-api-key": "wrong"}, {"Authorization": "Basic x"}):
        response = post(oai, "/v1/chat/completions", {"model": MODEL, "messages": USER}, headers)
        error = assert_envelope(response, 401)
        validate_schema("ErrorResponse", response.json())
        assert error["type"] == "invalid_request_error"
    bad = openai.OpenAI(base_url=f"{oai.base_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert post(oai, "/v1/chat/completions", {"model": MODEL, "messages": USER}, {"x-api-key": oai.secret}).status_code == 200


def test_auth_is_checked_before_the_body(oai: Any) -> None:
    assert_envelope(post(oai, "/v1/chat/completions", {"nonsense": 1}, {}), 401)


def test_unknown_model_and_url(client: openai.OpenAI, oai: Any) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert info.value.code == "model_not_found" and info.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    error = assert_envelope(post(oai, "/v1/nothing", {}), 404)
    assert "Invalid URL" in error["message"]
    response = httpx.get(f"{oai.base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {oai.secret}"})
    assert_envelope(response, 405)


def test_bad_json_body(oai: Any) -> None:
    response = httpx.post(
        f"{oai.base_url}/v1/chat/completions", content=b"{not json",
        headers={"Authorization": f"Bearer {oai.secret}", "content-type": "application/json"},
    )
    assert_envelope(response, 400)


CHAT_INVALID = [
    ("temperature", 2.5), ("temperature", -0.1), ("temperature", "hot"),
    ("top_p", 0), ("top_p", 1.5), ("top_k", 0), ("top_k", 201), ("top_k", 1.5),
    ("min_p", -0.1), ("min_p", 1.1),
    ("presence_penalty", 2.1), ("presence_penalty", -2.1), ("frequency_penalty", 3), ("frequency_penalty", -3),
    ("repetition_penalty", 0.05), ("repetition_penalty", 2.5),
    ("seed", -1), ("seed", 2147483648), ("seed", "x"),
    ("max_tokens", 0), ("max_tokens", 32769), ("max_tokens", True), ("max_completion_tokens", 0),
    ("max_completion_tokens", 40000),
    ("n", 0), ("n", 129),
    ("top_logprobs", 21), ("top_logprobs", -1),
    ("stop", ["a", "b", "c", "d", "e"]), ("stop", 5), ("stop", [""]),
    ("logit_bias", {"abc": 1}), ("logit_bias", {"5": 101}), ("logit_bias", {"5": "x"}),
    ("thinking_budget", 1023), ("thinking_budget", 32769),
    ("reasoning_effort", "extreme"), ("enable_thinking", "yes"),
    ("stream", "yes"), ("stream_options", {"include_usage": True}),
    ("tool_choice", "sometimes"), ("tool_choice", "auto"), ("parallel_tool_calls", "no"),
    ("response_format", {"type": "json_schema"}), ("response_format", {"type": "xml"}),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
                                                                                      "if": {}}}}),
    ("user", 5), ("chat_template_kwargs", "x"), ("ignore_eos", "x"),
    ("tools", [{"type": "function", "function": {"name": "bad name!"}}]),
]


@pytest.mark.parametrize("param,value", CHAT_INVALID, ids=[f"{p}={v!r}"[:40] for p, v in CHAT_INVALID])
def test_chat_param_validation(oai: Any, param: str, value: Any) -> None:
    response = post(oai, "/v1/chat/completions", {"model": MODEL, "messages": USER, param: value})
    error = assert_envelope(response, 400)
    assert error["param"] is not None and error["param"].split(".")[0].split("[")[0] == param, error


def test_top_logprobs_needs_logprobs(oai: Any) -> None:
    error = assert_envelope(post(oai, "/v1/chat/completions", {"model": MODEL, "messages": USER, "top_logprobs": 2}), 400)
    assert error["param"] == "top_logprobs"


@pytest.mark.parametrize(
    "messages,param",
    [
        ([], "messages"),
        ([{"role": "wizard", "content": "x"}], "messages[0]"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
         "messages[0].content[0]"),
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}],
         "messages[0].content[0]"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}],
         "messages[1].tool_calls[0].function.arguments"),
    ],
)
def test_message_validation(oai: Any, messages: list[Any], param: str) -> None:
    error = assert_envelope(post(oai, "/v1/chat/completions", {"model": MODEL, "messages": messages}), 400)
    assert error["param"] is not None and error["param"].startswith(param), error


def test_template_refusals_are_400(oai: Any) -> None:
    error = assert_envelope(
        post(oai, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "assistant", "content": "x"}]}), 400
    )
    assert error["param"] == "messages" and "user" in error["message"].lower()


def test_missing_model_and_messages(oai: Any) -> None:
    error = assert_envelope(post(oai, "/v1/chat/completions", {"messages": USER}), 400, "model")
    assert error["code"] == "missing_required_parameter"
    assert_envelope(post(oai, "/v1/chat/completions", {"model": MODEL}), 400, "messages")


def test_context_length_exceeded(client: openai.OpenAI, oai: Any) -> None:
    huge = "word " * 42000
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": huge}])
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"


def test_full_admission_queue_is_429(client: openai.OpenAI, oai: Any) -> None:
    oai.engine.overloaded = True
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert info.value.status_code == 429 and info.value.code == "engine_overloaded"
    assert info.value.response.headers["retry-after"] and info.value.response.headers["x-should-retry"] == "true"


def test_no_422_anywhere(oai: Any) -> None:
    for path, body in [
        ("/v1/chat/completions", {"model": MODEL, "messages": "not a list"}),
        ("/v1/completions", {"model": MODEL, "prompt": {"a": 1}}),
        ("/v1/completions", {"model": MODEL}),
        ("/v1/chat/completions", []),
    ]:
        response = post(oai, path, body)
        assert response.status_code == 400 and "detail" not in response.json(), response.text
