"""Hostile and broken inputs on every API: a 4xx in the family's format, the keep-alive connection kept, and
`/health` answering while costly input (a large count_tokens body, a large tool schema) is processed.

The real app (real processor, serving core, platform) over the scripted engine, with a small body limit so the 413
path is tested without sending 32 MB."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qwen35.api.app import create_app
from qwen35.api.settings import ServerSettings
from qwen35.platform import Platform
from qwen35.processor import load_processor
from qwen35.serving.core import ServingCore
from scripted_app import serve
from scripted_engine import ScriptedEngine

BODY_LIMIT = 1024 * 1024
MAX_VALUES = 50_000
MODEL = "qwen3-5-4b"
DEEP = b"[" * 10000 + b"]" * 10000
CHAT = {"model": MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    processor = load_processor(None)
    engine = ScriptedEngine([processor.tokenizer.encode("Hello<|im_end|>")], max_model_len=4096)
    platform = Platform.open(data_dir=tmp_path_factory.mktemp("hardening"))
    _, secret = platform.create_key("tests")
    core = ServingCore(engine, processor)
    app = create_app(core, platform, ServerSettings(max_model_len=core.max_model_len, max_body_bytes=BODY_LIMIT,
                                                       max_json_elements=MAX_VALUES))
    with serve(app) as base_url:
        yield base_url, secret
    platform.close()


def _headers(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}", "anthropic-version": "2023-06-01", "content-type": "application/json"}


def _on_one_connection(base_url: str, secret: str, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    """POST `raw`, then GET /health on the same connection: the server must not have closed it."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=raw, headers=_headers(secret))
        response = conn.getresponse()
        status, payload = response.status, json.loads(response.read())
        assert not response.will_close, f"{path}: the server closed the connection after {status}"
        sock = conn.sock
        conn.request("GET", "/health")
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read())["status"] == "ok"
        assert conn.sock is sock, "the follow-up request needed a new connection"
    finally:
        conn.close()
    return status, payload


def _is_openai_error(payload: dict[str, Any]) -> bool:
    return set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "param", "code"}


def _is_anthropic_error(payload: dict[str, Any], kind: str = "invalid_request_error") -> bool:
    return payload.get("type") == "error" and payload["error"]["type"] == kind and bool(payload.get("request_id"))


@pytest.mark.parametrize("key", ["\u00b9", "--5", "1.5", " 7", "\u0661"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_logit_bias_keys_that_are_no_token_ids(server: tuple[str, str], path: str, key: str) -> None:
    body = dict(CHAT) if "chat" in path else {"model": MODEL, "prompt": "hi", "max_tokens": 3}
    status, payload = _on_one_connection(*server, path, json.dumps({**body, "logit_bias": {key: 1}}).encode())
    assert status == 400 and _is_openai_error(payload) and payload["error"]["param"] == "logit_bias"


def test_lone_surrogate_as_raw_bytes_in_a_completions_prompt(server: tuple[str, str]) -> None:
    # json.loads decodes ED A0 80 with surrogatepass: a str no tokenizer can encode
    raw = b'{"model":"qwen3-5-4b","prompt":"hi \xed\xa0\x80 there","max_tokens":3}'
    status, payload = _on_one_connection(*server, "/v1/completions", raw)
    assert status == 400 and _is_openai_error(payload) and payload["error"]["param"] == "prompt"


@pytest.mark.parametrize(
    "path, anthropic",
    [("/v1/messages", True), ("/v1/messages/count_tokens", True), ("/v1/responses", False),
     ("/v1/dashboard/keys", False), ("/v1/chat/completions", False), ("/v1/completions", False)],
)
def test_json_nested_10000_deep(server: tuple[str, str], path: str, anthropic: bool) -> None:
    status, payload = _on_one_connection(*server, path, b'{"model":"qwen3-5-4b","x":' + DEEP + b"}")
    assert status == 400
    assert _is_anthropic_error(payload) if anthropic else _is_openai_error(payload)
    assert "nested too deeply" in json.dumps(payload)


@pytest.mark.parametrize("path, anthropic", [("/v1/messages", True), ("/v1/chat/completions", False)])
def test_json_with_too_many_values(server: tuple[str, str], path: str, anthropic: bool) -> None:
    many = b"[" + b",".join([b"0"] * MAX_VALUES) + b"]"  # 100 kB, well inside the body limit
    status, payload = _on_one_connection(*server, path, b'{"model":"qwen3-5-4b","x":' + many + b"}")
    assert status == 400
    assert _is_anthropic_error(payload) if anthropic else _is_openai_error(payload)
    assert f"at most {MAX_VALUES}" in json.dumps(payload)


def test_anthropic_max_tokens_as_a_huge_float(server: tuple[str, str]) -> None:
    raw = json.dumps({"model": MODEL, "max_tokens": 6.97e16, "messages": [{"role": "user", "content": "hi"}]})
    status, payload = _on_one_connection(*server, "/v1/messages", raw.encode())
    assert status == 400 and _is_anthropic_error(payload) and "max_tokens" in payload["error"]["message"]


@pytest.mark.parametrize("path, anthropic", [("/v1/messages", True), ("/v1/chat/completions", False),
                                             ("/v1/responses", False), ("/v1/dashboard/keys", False)])
def test_body_over_the_limit_is_413_in_the_family_format(server: tuple[str, str], path: str, anthropic: bool) -> None:
    base_url, secret = server
    raw = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * (BODY_LIMIT + 10)}]}).encode()
    response = httpx.post(base_url + path, content=raw, headers=_headers(secret), timeout=30)
    assert response.status_code == 413
    payload = response.json()
    if anthropic:
        assert _is_anthropic_error(payload, "request_too_large")
    else:
        assert _is_openai_error(payload) and payload["error"]["code"] == "request_too_large"


def test_default_value_limit() -> None:
    assert ServerSettings().max_json_elements == 1_000_000


def test_default_body_limit_is_anthropics_32_mb() -> None:
    assert ServerSettings().max_body_bytes == 32 * 1024 * 1024


def _health_while(base_url: str, secret: str, path: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    """Send `body` and, while it is processed, probe /health; returns the answer and the slowest probe (s)."""
    raw = json.dumps(body).encode()
    result: dict[str, httpx.Response] = {}

    def send() -> None:
        result["r"] = httpx.post(base_url + path, content=raw, headers=_headers(secret), timeout=120)

    thread = threading.Thread(target=send)
    thread.start()
    worst = 0.0
    with httpx.Client(base_url=base_url, timeout=30) as probe:
        probe.get("/health")
        while thread.is_alive():
            t0 = time.monotonic()
            assert probe.get("/health").status_code == 200
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.01)
    thread.join()
    return result["r"], worst


def test_health_answers_while_a_large_count_tokens_body_is_tokenized(server: tuple[str, str]) -> None:
    text = " ".join(f"word{i % 1000}" for i in range(110_000))  # ~0.75 MB, ~0.4 M tokens: about a second
    response, worst = _health_while(*server, "/v1/messages/count_tokens",
                                    {"model": MODEL, "messages": [{"role": "user", "content": text}]})
    assert response.status_code == 200 and response.json()["input_tokens"] > 200_000
    assert worst < 0.1, f"/health took {worst * 1000:.0f} ms"


def test_health_answers_while_a_large_tool_schema_is_processed(server: tuple[str, str]) -> None:
    properties = {f"p{i}": {"type": "string", "description": "d" * 40} for i in range(8_000)}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": properties}}}]
    response, worst = _health_while(*server, "/v1/chat/completions", {**CHAT, "tools": tools, "tool_choice": "required"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    assert worst < 0.1, f"/health took {worst * 1000:.0f} ms"
