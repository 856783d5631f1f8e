"""Rate-limit refusals through api.metering: a 429 carries each family's own headers (OpenAI's flat `x-ratelimit-*`
on OpenAI paths, `anthropic-ratelimit-*` on /v1/messages) plus `retry-after`, and never the other family's."""

from __future__ import annotations

import re
from typing import Any

import anthropic
import httpx
import openai
import pytest

from qwen35.api.anthropic.errors import anthropic_error_response
from qwen35.api.errors import openai_error_response
from qwen35.api.metering import platform_error
from qwen35.platform.errors import RateLimited
from qwen35.platform.keys import KeyLimits
from qwen35.serving.errors import RateLimitedError

MODEL = "qwen3-5-4b"
USER = [{"role": "user", "content": "Hi"}]
OPENAI_DURATION = re.compile(r"^(\d+ms|\d+(\.\d+)?s|\d+m\d+(\.\d+)?s)$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _limited_key(oai: Any, name: str) -> str:
    return str(oai.platform.create_key(name, limits=KeyLimits(requests_per_minute=1))[1])


def _chat(oai: Any, secret: str) -> httpx.Response:
    return httpx.post(
        f"{oai.base_url}/v1/chat/completions", json={"model": MODEL, "messages": USER},
        headers={"authorization": f"Bearer {secret}"}, timeout=30,
    )


def _message(oai: Any, secret: str) -> httpx.Response:
    return httpx.post(
        f"{oai.base_url}/v1/messages", json={"model": MODEL, "max_tokens": 20, "messages": USER},
        headers={"x-api-key": secret, "anthropic-version": "2023-06-01"}, timeout=30,
    )


def _retry_after(headers: httpx.Headers) -> int:
    seconds, ms = int(headers["retry-after"]), int(headers["retry-after-ms"])
    assert 1 <= seconds <= 60 and 0 < ms <= 60_000 and seconds * 1000 >= ms  # whole seconds, rounded up
    return seconds


def test_openai_429_has_flat_x_ratelimit_headers_and_retry_after(oai: Any) -> None:
    secret = _limited_key(oai, "rpm-openai")
    first = _chat(oai, secret)
    assert first.status_code == 200
    assert (first.headers["x-ratelimit-limit-requests"], first.headers["x-ratelimit-remaining-requests"]) == ("1", "0")

    refused = _chat(oai, secret)
    assert refused.status_code == 429
    assert refused.json()["error"] == {
        "message": refused.json()["error"]["message"], "type": "requests", "param": None,
        "code": "rate_limit_exceeded",
    }
    headers = refused.headers
    assert headers["x-ratelimit-limit-requests"] == "1" and headers["x-ratelimit-remaining-requests"] == "0"
    assert OPENAI_DURATION.match(headers["x-ratelimit-reset-requests"]), headers["x-ratelimit-reset-requests"]
    assert headers["x-should-retry"] == "true"
    _retry_after(headers)
    assert not any(name.startswith("anthropic-") for name in headers)
    # a nested per-family mapping must never reach the wire as a header value
    assert all("{" not in value for value in headers.values())


def test_openai_sdk_sees_a_rate_limit_error_with_the_headers(oai: Any) -> None:
    secret = _limited_key(oai, "rpm-sdk")
    client = openai.OpenAI(base_url=f"{oai.base_url}/v1", api_key=secret, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=USER)
    with pytest.raises(openai.RateLimitError) as info:
        client.completions.create(model=MODEL, prompt="Hi")  # the limit is per key, across endpoints
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["x-ratelimit-limit-requests"] == "1"


def test_anthropic_429_has_anthropic_ratelimit_headers_and_retry_after(oai: Any) -> None:
    secret = _limited_key(oai, "rpm-anthropic")
    first = _message(oai, secret)
    assert first.status_code == 200
    assert first.headers["anthropic-ratelimit-requests-limit"] == "1"

    refused = _message(oai, secret)
    assert refused.status_code == 429
    body = refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    headers = refused.headers
    assert headers["anthropic-ratelimit-requests-limit"] == "1"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert RFC3339.match(headers["anthropic-ratelimit-requests-reset"])
    assert headers["request-id"] == body["request_id"]
    _retry_after(headers)
    assert not any(name.startswith("x-ratelimit-") for name in headers)

    client = anthropic.Anthropic(base_url=oai.base_url, api_key=secret, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=MODEL, max_tokens=20, messages=USER)
    assert info.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_each_family_renders_only_its_own_rate_limit_headers() -> None:
    refusal = RateLimited(
        "tokens", 2.5,
        {"x-ratelimit-limit-tokens": "100", "retry-after": "3", "retry-after-ms": "2500"},
        {"anthropic-ratelimit-tokens-limit": "100", "retry-after": "3", "retry-after-ms": "2500"},
        "Rate limit reached for tokens per minute",
    )
    error = platform_error(refusal)
    as_openai = openai_error_response(None, error)
    as_anthropic = anthropic_error_response(None, error)
    assert as_openai.status_code == as_anthropic.status_code == 429
    assert as_openai.headers["x-ratelimit-limit-tokens"] == "100" and as_openai.headers["retry-after"] == "3"
    assert "anthropic-ratelimit-tokens-limit" not in as_openai.headers
    assert as_anthropic.headers["anthropic-ratelimit-tokens-limit"] == "100"
    assert as_anthropic.headers["retry-after-ms"] == "2500"
    assert "x-ratelimit-limit-tokens" not in as_anthropic.headers
    # extras set for the OpenAI family only stay out of an Anthropic answer
    openai_only = RateLimitedError("limited", headers={"openai": {"x-ratelimit-limit-requests": "1"}})
    assert "x-ratelimit-limit-requests" not in anthropic_error_response(None, openai_only).headers
    assert openai_error_response(None, openai_only).headers["x-ratelimit-limit-requests"] == "1"
