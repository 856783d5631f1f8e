"""Per-request time limit (`ServerSettings.max_request_s`, `qwen35 serve --request-timeout`): past it a non-streamed
request gets a 504 in its family's format and a stream its in-stream error, both billed for what was generated; a
request inside the limit is untouched. Scripted engine with slow steps (protocol shape)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from qwen35.api.app import create_app
from qwen35.api.settings import ServerSettings
from qwen35.platform import Platform
from qwen35.processor import load_processor
from qwen35.serving.core import ServingCore
from scripted_app import serve
from scripted_engine import ScriptedEngine

MODEL = "qwen3-5-4b"
LIMIT_S = 0.6
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Platform]]:
    processor = load_processor(None)
    engine = ScriptedEngine([processor.tokenizer.encode("one two three four five six seven eight<|im_end|>")],
                            step_delay_s=0.2)
    platform = Platform.open(data_dir=tmp_path_factory.mktemp("timeout"))
    _, secret = platform.create_key("tests")
    core = ServingCore(engine, processor)
    settings = ServerSettings(max_model_len=core.max_model_len, keepalive_s=0.1, max_request_s=LIMIT_S)
    with serve(create_app(core, platform, settings)) as base_url:
        yield base_url, secret, platform
    platform.close()


def _headers(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}", "x-api-key": secret, "anthropic-version": "2023-06-01"}


def test_non_streamed_requests_past_the_limit_get_504(slow: tuple[str, str, Platform]) -> None:
    base_url, secret, platform = slow
    chat = httpx.post(f"{base_url}/v1/chat/completions", headers=_headers(secret), timeout=30,
                      json={"model": MODEL, "messages": USER, "max_tokens": 50})
    assert chat.status_code == 504 and chat.json()["error"]["code"] == "request_timeout"
    messages = httpx.post(f"{base_url}/v1/messages", headers=_headers(secret), timeout=30,
                          json={"model": MODEL, "messages": USER, "max_tokens": 50})
    assert messages.status_code == 504 and messages.json()["error"]["type"] == "timeout_error"
    records = platform.list_usage(limit=10)
    assert records[0].status == "failed" and records[0].output_tokens >= 1  # what was generated is billed


def test_streams_past_the_limit_end_with_the_in_stream_error(slow: tuple[str, str, Platform]) -> None:
    base_url, secret, _ = slow
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", headers=_headers(secret), timeout=30,
                      json={"model": MODEL, "messages": USER, "max_tokens": 50, "stream": True}) as response:
        assert response.status_code == 200
        frames = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    errors = [json.loads(f) for f in frames if f != "[DONE]" and "error" in json.loads(f)]
    assert errors and errors[-1]["error"]["code"] == "request_timeout"


def test_requests_inside_the_limit_are_untouched(slow: tuple[str, str, Platform]) -> None:
    base_url, secret, _ = slow
    chat = httpx.post(f"{base_url}/v1/chat/completions", headers=_headers(secret), timeout=30,
                      json={"model": MODEL, "messages": USER, "max_tokens": 1})
    assert chat.status_code == 200 and chat.json()["choices"][0]["finish_reason"] == "length"
