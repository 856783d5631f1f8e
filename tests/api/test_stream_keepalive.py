"""Streams that survive proxies, on all four APIs, over a slow scripted engine: headers and a first event at once
(Chat / Completions a `: keep-alive` comment, Responses `response.created`, Anthropic `message_start`), then
keep-alives at a fixed interval while the engine is silent, so a proxy's idle timeout never fires; refusals at the
engine's door are still HTTP errors.

Time is scaled: keep-alive every 0.2 s, an engine step of 1.2 s (a long prefill or queue wait), a proxy that cuts
an idle connection after 0.9 s (a 15 s proxy timeout is 3x the default 5 s keep-alive; 4.5x here leaves room for a
loaded CI machine's scheduling hiccups)."""

from __future__ import annotations

import json
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
from scripted_app import reset_engine, serve
from scripted_engine import ScriptedEngine

KEEPALIVE_S = 0.2
STEP_S = 1.2
PROXY_IDLE_TIMEOUT_S = 0.9
MODEL = "qwen3-5-4b"
USER = [{"role": "user", "content": "hi"}]
APIS: dict[str, tuple[str, dict[str, Any], bytes]] = {
    "chat": ("/v1/chat/completions", {"messages": USER, "max_tokens": 8}, b": keep-alive"),
    "completions": ("/v1/completions", {"prompt": "hi", "max_tokens": 8}, b": keep-alive"),
    "responses": ("/v1/responses", {"input": "hi", "max_output_tokens": 8}, b"event: response.created"),
    "messages": ("/v1/messages", {"messages": USER, "max_tokens": 8}, b"event: message_start"),
}


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, ScriptedEngine]]:
    processor = load_processor(None)
    engine = ScriptedEngine([processor.tokenizer.encode("Hi there<|im_end|>")], step_delay_s=STEP_S,
                            tokens_per_step=2)
    platform = Platform.open(data_dir=tmp_path_factory.mktemp("keepalive"))
    _, secret = platform.create_key("tests")
    core = ServingCore(engine, processor)
    app = create_app(core, platform, ServerSettings(max_model_len=core.max_model_len, keepalive_s=KEEPALIVE_S))
    with serve(app) as base_url:
        yield base_url, secret, engine
    platform.close()


def _headers(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}", "anthropic-version": "2023-06-01"}


@pytest.mark.parametrize("api", list(APIS))
def test_first_event_at_once_then_keepalives_while_silent(slow: tuple[str, str, ScriptedEngine], api: str) -> None:
    base_url, secret, engine = slow
    reset_engine(engine)
    engine.step_delay_s = STEP_S
    path, body, first = APIS[api]
    arrivals: list[tuple[float, bytes]] = []
    t0 = time.monotonic()
    with httpx.stream("POST", base_url + path, json={"model": MODEL, "stream": True, **body},
                      headers=_headers(secret), timeout=30) as response:
        headers_s = time.monotonic() - t0
        assert response.status_code == 200
        for chunk in response.iter_raw():
            arrivals.append((time.monotonic() - t0, chunk))
    text = b"".join(chunk for _, chunk in arrivals)
    # headers and the family's first event before the engine's first step ends
    assert headers_s < STEP_S / 2 and arrivals[0][0] < STEP_S / 2, (headers_s, arrivals[0])
    assert arrivals[0][1].startswith(first), arrivals[0][1][:80]
    # a proxy that cuts idle connections never fires: no silence longer than its timeout, from start to end
    times = [0.0, *(t for t, _ in arrivals)]
    assert max(b - a for a, b in zip(times, times[1:])) < PROXY_IDLE_TIMEOUT_S
    keepalive = b"event: ping" if api == "messages" else b": keep-alive"
    assert text.count(keepalive) >= int(STEP_S / KEEPALIVE_S)  # the silent steps were bridged
    assert text.rstrip().endswith(b"[DONE]") or b"message_stop" in text or b"response.completed" in text


@pytest.mark.parametrize("api", list(APIS))
def test_engine_refusal_is_still_an_http_error_on_a_stream(slow: tuple[str, str, ScriptedEngine], api: str) -> None:
    base_url, secret, engine = slow
    reset_engine(engine)
    engine.overloaded = True
    try:
        path, body, _ = APIS[api]
        response = httpx.post(base_url + path, json={"model": MODEL, "stream": True, **body},
                              headers=_headers(secret), timeout=30)
    finally:
        engine.overloaded = False
    assert response.status_code == (529 if api == "messages" else 429)
    assert response.headers["retry-after"] and json.loads(response.text)


def test_default_keepalive_is_under_common_proxy_idle_timeouts() -> None:
    assert ServerSettings().keepalive_s <= 10
