"""Integer parameters are integers on every API: a float (16.0, 6.97e16), a numeric string, a bool or an out-of-range
value is a 400 in the family's own error format, never coerced or truncated (issue 14: Anthropic `max_tokens`
6.97e16 was accepted). The real app over the scripted engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripted_app import AppHarness, running_app

MODEL = "qwen3-5-4b"
USER = [{"role": "user", "content": "hi"}]
BASE = {
    "/v1/chat/completions": {"model": MODEL, "messages": USER, "max_tokens": 4},
    "/v1/completions": {"model": MODEL, "prompt": "hi", "max_tokens": 4},
    "/v1/responses": {"model": MODEL, "input": "hi", "max_output_tokens": 16},
    "/v1/messages": {"model": MODEL, "messages": USER, "max_tokens": 4},
}
INTEGER_FIELDS = {
    "/v1/chat/completions": ["max_tokens", "max_completion_tokens", "n", "seed", "top_k", "top_logprobs",
                             "min_tokens", "thinking_budget"],
    "/v1/completions": ["max_tokens", "n", "seed", "top_k", "logprobs", "min_tokens"],
    "/v1/responses": ["max_output_tokens", "seed", "top_k", "top_logprobs", "thinking_budget"],
    "/v1/messages": ["max_tokens", "seed", "top_k", "thinking_budget"],
}
BAD_VALUES: list[Any] = [16.0, 6.97e16, 2.5, "16", True]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    with running_app(Path(tmp_path_factory.mktemp("intparams"))) as harness:
        yield harness


def _post(app: AppHarness, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {app.secret}", "anthropic-version": "2023-06-01"}
    return httpx.post(app.base_url + path, json=body, headers=headers, timeout=30)


def _assert_family_400(path: str, response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, (path, field, response.text)
    body = response.json()
    if path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert field in body["error"]["message"]
    else:
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["param"] == field or field in body["error"]["message"], body


@pytest.mark.parametrize("path", list(BASE))
def test_integers_as_integers_are_served(app: AppHarness, path: str) -> None:
    assert _post(app, path, BASE[path]).status_code == 200


@pytest.mark.parametrize("path", list(BASE))
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_integer_fields_refuse_floats_strings_and_bools(app: AppHarness, path: str, value: Any) -> None:
    for field in INTEGER_FIELDS[path]:
        response = _post(app, path, {**BASE[path], field: value})
        _assert_family_400(path, response, field)


@pytest.mark.parametrize("path", list(BASE))
def test_out_of_range_output_limits_are_refused(app: AppHarness, path: str) -> None:
    field = "max_output_tokens" if path == "/v1/responses" else "max_tokens"
    for value in (69_700_000_000_000_000, 2**63, -1, 0):
        _assert_family_400(path, _post(app, path, {**BASE[path], field: value}), field)


def test_anthropic_thinking_budget_tokens_must_be_an_integer(app: AppHarness) -> None:
    body = {**BASE["/v1/messages"], "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048.0}}
    _assert_family_400("/v1/messages", _post(app, "/v1/messages", body), "budget_tokens")
