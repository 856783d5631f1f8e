"""Revoking a key ends its open streams within an engine step (issue 14: a revoked key's stream ran 379 more frames
and was billed in full): the family's in-stream authentication error, billed once for what was produced.

The real app over the scripted engine (one token per 100 ms step). Revoked three ways: through the dashboard route
of the same server (seen at once), by another process's Platform on the same store (`qwen35 keys revoke`; seen by
the server's 0.25 s poll), and for a non-streamed request (a 401 instead of the answer).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwen35.api.app import create_app
from qwen35.api.settings import ServerSettings
from qwen35.platform import Platform
from qwen35.processor import load_processor
from qwen35.serving.core import ServingCore
from scripted_app import serve, wait_for_usage
from scripted_engine import ScriptedEngine

MODEL = "qwen3-5-4b"
NUM_TOKENS = 300
STEP_S = 0.1  # slow enough that a loaded machine's client lag stays under a step or two
USER = [{"role": "user", "content": "hi"}]


class Harness:
    def __init__(self, base_url: str, platform: Platform, admin_secret: str) -> None:
        self.base_url, self.platform, self.admin_secret = base_url, platform, admin_secret


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    data_dir = tmp_path_factory.mktemp("revocation")
    processor = load_processor(None)
    tokens = processor.tokenizer.encode(" word" * NUM_TOKENS + "<|im_end|>")
    engine = ScriptedEngine([tokens], max_model_len=4096, step_delay_s=STEP_S)
    platform = Platform.open(data_dir=data_dir)
    _, admin = platform.create_key("admin", admin=True)
    platform.start_instance(heartbeat_s=1, stale_after_s=30)  # a server: polls revocations by other processes
    app = create_app(ServingCore(engine, processor), platform, ServerSettings(max_model_len=4096))
    with serve(app) as base_url:
        yield Harness(base_url, platform, admin)
    platform.close()


def _stream(h: Harness, secret: str, path: str, body: dict[str, Any], revoke: Any, after: int) -> dict[str, Any]:
    """Stream; call `revoke()` after `after` content deltas; return what the client saw."""
    headers = {"authorization": f"Bearer {secret}", "anthropic-version": "2023-06-01"}
    seen: dict[str, Any] = {"deltas": 0, "at_revoke": None, "during": 0, "error": None, "normal_end": False,
                            "id": None}
    with httpx.Client(timeout=60) as client, client.stream(
        "POST", h.base_url + path, json={**body, "stream": True}, headers=headers
    ) as response:
        assert response.status_code == 200
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if event == "message_start":
                seen["id"] = data["message"]["id"]
            elif event == "response.created":
                seen["id"] = data["response"]["id"]
            elif event is None and seen["id"] is None:
                seen["id"] = data.get("id")
            if "error" in data and data.get("type") in (None, "error") or event == "response.failed":
                seen["error"] = data
            elif event in ("message_stop", "response.completed"):
                seen["normal_end"] = True
            elif (event is None and any(c.get("delta", {}).get("content") or c.get("delta", {}).get(
                "reasoning_content") or c.get("text") for c in data.get("choices", []))) or (
                event == "content_block_delta" and data["delta"].get("type") in ("text_delta", "thinking_delta")
            ) or (event or "").endswith("_text.delta"):  # one token per delta: reasoning or answer
                seen["deltas"] += 1
                if seen["deltas"] == after:
                    began = time.monotonic()
                    revoke()
                    seen["at_revoke"] = seen["deltas"]  # counted when the revocation is committed
                    # steps the engine made while the revocation was being made (not yet visible to it)
                    seen["during"] = math.ceil((time.monotonic() - began) / STEP_S)
            elif event is None and any(c.get("finish_reason") for c in data.get("choices", [])):
                seen["normal_end"] = True
    return seen


CASES = [
    ("/v1/chat/completions", {"model": MODEL, "messages": USER, "max_tokens": 400}),
    ("/v1/messages", {"model": MODEL, "messages": USER, "max_tokens": 400}),
    ("/v1/responses", {"model": MODEL, "input": "hi", "max_output_tokens": 400}),
]


@pytest.mark.parametrize("path,body", CASES, ids=[c[0] for c in CASES])
def test_revoked_through_the_dashboard_ends_the_stream_at_the_next_step(
    harness: Harness, path: str, body: dict[str, Any]
) -> None:
    key, secret = harness.platform.create_key("doomed")

    def revoke() -> None:
        response = httpx.delete(f"{harness.base_url}/v1/dashboard/keys/{key.key_id}",
                                headers={"authorization": f"Bearer {harness.admin_secret}"})
        assert response.status_code == 200, response.text

    seen = _stream(harness, secret, path, body, revoke, after=10)
    assert not seen["normal_end"] and seen["error"] is not None, seen
    if path == "/v1/messages":
        assert seen["error"]["error"]["type"] == "authentication_error"
    elif path == "/v1/chat/completions":
        assert seen["error"]["error"]["code"] == "invalid_api_key"
    # within an engine step of the commit (+ a frame on the wire, + the steps made while the revoke request ran)
    assert seen["deltas"] <= seen["at_revoke"] + seen["during"] + 2, seen
    record = wait_for_usage(harness.platform, seen["id"], timeout_s=5)
    assert record.status == "failed"
    assert seen["deltas"] <= record.output_tokens <= seen["deltas"] + 3  # billed for what was produced
    assert len([r for r in harness.platform.list_usage(key_id=key.key_id)]) == 1  # exactly once


def test_revoked_by_another_process_ends_the_stream_within_the_poll(harness: Harness) -> None:
    key, secret = harness.platform.create_key("doomed-elsewhere")
    other = Platform.open(database_url=harness.platform.url)  # as `qwen35 keys revoke` would
    revoked_at: list[float] = []
    try:
        def revoke() -> None:
            other.revoke_key(key.key_id)
            revoked_at.append(time.monotonic())

        seen = _stream(harness, secret, *CASES[0], revoke, after=10)
    finally:
        other.close()
    assert not seen["normal_end"] and seen["error"]["error"]["code"] == "invalid_api_key", seen
    # poll 0.25 s = 3 steps of 100 ms, plus a step and what is on the wire
    assert seen["deltas"] <= seen["at_revoke"] + seen["during"] + 8, seen
    record = wait_for_usage(harness.platform, seen["id"], timeout_s=5)
    assert seen["deltas"] <= record.output_tokens <= seen["deltas"] + 3
    assert record.output_tokens < NUM_TOKENS


def test_revoked_non_streamed_request_gets_a_401_and_is_billed_for_what_ran(harness: Harness) -> None:
    key, secret = harness.platform.create_key("doomed-sync")
    threading.Timer(0.5, lambda: harness.platform.revoke_key(key.key_id)).start()
    started = time.monotonic()
    response = httpx.post(f"{harness.base_url}/v1/chat/completions",
                          json={"model": MODEL, "messages": USER, "max_tokens": 400},
                          headers={"authorization": f"Bearer {secret}"}, timeout=60)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert time.monotonic() - started < NUM_TOKENS * STEP_S / 2  # it did not run to its end
    records = harness.platform.list_usage(key_id=key.key_id)
    assert len(records) == 1 and 0 < records[0].output_tokens < NUM_TOKENS and records[0].status == "failed"


def test_the_revocation_check_is_memory_only(tmp_path: Path) -> None:
    """A stream's check per event costs no query: revocations come from this process or from a poll."""
    with Platform.open(data_dir=tmp_path) as p, Platform.open(data_dir=tmp_path) as other:
        key, _ = p.create_key("k")
        other.revoke_key(key.key_id)
        assert not p.is_key_revoked(key.key_id)  # not polled yet: nothing asked the store
        assert p.poll_revocations() and p.is_key_revoked(key.key_id)
        assert not p.poll_revocations()  # unchanged count: one COUNT(*) and nothing more
        second, _ = p.create_key("k2")
        p.revoke_key(second.key_id)
        assert p.is_key_revoked(second.key_id)  # its own revocation: at once
