"""Client disconnects at every phase on the real engine (tiny checkpoint): queued behind a full batch, before the
first token, mid-stream, and non-streamed. Each time the engine drops the request (nothing waiting or running, no
KV block or state slot held once the others finish), and the ledger has exactly one `cancelled` record charging
what was produced (at least what the client saw, never more than max_tokens)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripted_app import RealApp, running_real_app, wait_for_usage

MODEL = "qwen3-5-4b"


@pytest.fixture(scope="module")
def app(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealApp]:
    with running_real_app(tiny_checkpoint, tmp_path_factory.mktemp("disconnects")) as running:
        yield running


def _body(tokens: int, text: str = "go", stream: bool = True) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": tokens,
            "min_tokens": tokens, "stream": stream, "reasoning_effort": "none"}


def _gauges(app: RealApp) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{app.base_url}/metrics", timeout=30).text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("qwen35_queue_depth", "qwen35_running_sequences", "qwen35_kv_blocks_used",
                    "qwen35_state_slots_used", "qwen35_requests_in_flight"):
            out[name] = float(value)
    return out


def _idle(app: RealApp, timeout: float = 60) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        gauges = _gauges(app)
        busy = {k: v for k, v in gauges.items() if v and k != "qwen35_state_slots_used"}
        if not busy or time.monotonic() > deadline:
            return gauges
        time.sleep(0.1)


def _stream_until(app: RealApp, body: dict[str, Any], content_chunks: int) -> tuple[str, int]:
    """Open a stream, read until `content_chunks` content deltas came (0: only the opening), then hang up."""
    seen, request_id = 0, ""
    headers = {"authorization": f"Bearer {app.secret}"}
    with httpx.stream("POST", f"{app.base_url}/v1/chat/completions", json=body, headers=headers,
                      timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            request_id = chunk["id"]
            if any(c["delta"].get("content") or c["delta"].get("reasoning_content") for c in chunk["choices"]):
                seen += 1
            if seen >= content_chunks:
                break
    return request_id, seen


def test_mid_stream_disconnect(app: RealApp) -> None:
    request_id, seen = _stream_until(app, _body(500), 5)
    record = wait_for_usage(app.platform, request_id)
    assert record.status == "cancelled" and seen <= record.output_tokens < 500
    assert len([r for r in app.platform.list_usage(limit=1000) if r.request_id == request_id]) == 1
    gauges = _idle(app)
    assert gauges["qwen35_kv_blocks_used"] == 0 and gauges["qwen35_running_sequences"] == 0


def test_disconnect_before_the_first_token(app: RealApp) -> None:
    long_prompt = "word " * 700  # a prefill of several chunks
    request_id, seen = _stream_until(app, _body(200, long_prompt), 0)
    assert seen == 0
    record = wait_for_usage(app.platform, request_id)
    assert record.status == "cancelled" and record.output_tokens < 200 and record.input_tokens > 700
    assert _idle(app)["qwen35_kv_blocks_used"] == 0


def test_disconnect_while_queued_behind_a_full_batch(app: RealApp) -> None:
    headers = {"authorization": f"Bearer {app.secret}"}
    done: list[int] = []

    def long_stream(i: int) -> None:
        response = httpx.post(f"{app.base_url}/v1/chat/completions", json=_body(400, f"busy {i}", stream=False),
                              headers=headers, timeout=300)
        done.append(response.status_code)

    runners = [threading.Thread(target=long_stream, args=(i,)) for i in range(4)]  # max_num_seqs is 4
    for t in runners:
        t.start()
    deadline = time.monotonic() + 60
    while _gauges(app).get("qwen35_running_sequences", 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    request_id, seen = _stream_until(app, _body(50, "queued"), 0)
    record = wait_for_usage(app.platform, request_id)
    assert record.status == "cancelled" and record.output_tokens == 0 and seen == 0
    assert _gauges(app)["qwen35_queue_depth"] == 0  # dropped from the queue at once, not when a slot came free
    for t in runners:
        t.join(300)
    assert done == [200] * 4
    gauges = _idle(app)
    assert gauges["qwen35_kv_blocks_used"] == 0 and gauges["qwen35_requests_in_flight"] == 0


def test_non_streamed_disconnect(app: RealApp) -> None:
    headers = {"authorization": f"Bearer {app.secret}"}
    before = {r.request_id for r in app.platform.list_usage(limit=1000)}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{app.base_url}/v1/chat/completions", json=_body(800, "slow", stream=False), headers=headers,
                   timeout=1.0)
    deadline = time.monotonic() + 30
    new: list[Any] = []
    while not new and time.monotonic() < deadline:
        new = [r for r in app.platform.list_usage(limit=1000) if r.request_id not in before]
        time.sleep(0.1)
    assert len(new) == 1 and new[0].status == "cancelled" and new[0].output_tokens < 800
    assert _idle(app)["qwen35_kv_blocks_used"] == 0
