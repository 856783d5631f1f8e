"""usage.cost on /v1/messages: the ledger's exact cost at the rate card, in the non-stream Message and in the
streamed `message_delta`, with the ledger record written before the client hears the end."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import anthropic
import httpx

from scripted_app import AppHarness, assert_matches_spec

MODEL = "qwen3-5-4b"
USER = [{"role": "user", "content": "Hi"}]


def rate_card_cost(uncached: int, cached: int, output: int) -> Decimal:
    """The seed's rate card: input $0.04/M, cached input $0.02/M, output $0.07/M (reasoning included)."""
    return (Decimal(uncached) * Decimal("0.04") + Decimal(cached) * Decimal("0.02")
            + Decimal(output) * Decimal("0.07")) / Decimal(1_000_000)


def test_usage_cost_is_the_ledger_cost_at_the_rate_card(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.think_then_say("Let me think about it.", "Done.")
    harness.engine.num_cached_tokens = 4
    message = client.messages.create(model=MODEL, max_tokens=200, messages=USER)
    record = harness.platform.get_usage(message.id)  # recorded before the response was sent
    assert record is not None and record.endpoint == "messages" and record.status == "completed"
    usage = message.usage.model_dump()
    uncached, cached, output = usage["input_tokens"], usage["cache_read_input_tokens"], usage["output_tokens"]
    assert (cached, record.input_tokens, record.output_tokens) == (4, uncached + cached, output)
    expected = rate_card_cost(uncached, cached, output)
    assert record.cost == expected > 0
    assert Decimal(str(usage["cost"])) == expected


def test_raw_body_with_cost_matches_the_spec(harness: AppHarness) -> None:
    harness.say("Priced.")
    response = httpx.post(
        f"{harness.base_url}/v1/messages", json={"model": MODEL, "max_tokens": 50, "messages": USER},
        headers={"x-api-key": harness.secret, "anthropic-version": "2023-06-01"}, timeout=30,
    )
    body = response.json()
    assert isinstance(body["usage"]["cost"], float) and body["usage"]["cost"] > 0
    assert_matches_spec("anthropic", "Message", body)


def test_stream_message_delta_carries_the_cost_and_the_record_exists_first(harness: AppHarness) -> None:
    harness.think_then_say("Plan it.", "Streamed and priced.")
    harness.engine.num_cached_tokens = 2
    body = {"model": MODEL, "max_tokens": 200, "messages": USER, "stream": True}
    headers = {"x-api-key": harness.secret, "anthropic-version": "2023-06-01"}
    events: list[tuple[str, dict[str, Any]]] = []
    record_at_delta = None
    with httpx.stream("POST", f"{harness.base_url}/v1/messages", json=body, headers=headers, timeout=30) as response:
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
                if name == "message_delta":  # checked before reading on: the end is what the client just saw
                    record_at_delta = harness.platform.get_usage(events[0][1]["message"]["id"])
    names = [n for n, _ in events]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert "cost" not in events[0][1]["message"]["usage"]  # unknown at message_start: left out, not null
    assert record_at_delta is not None and record_at_delta.status == "completed"
    delta_usage = events[-2][1]["usage"]
    uncached, cached = delta_usage["input_tokens"], delta_usage["cache_read_input_tokens"]
    expected = rate_card_cost(uncached, cached, delta_usage["output_tokens"])
    assert cached == 2 and record_at_delta.cost == expected
    assert Decimal(str(delta_usage["cost"])) == expected
    assert_matches_spec("anthropic", "MessageDeltaEvent", events[-2][1])


def test_sdk_stream_accepts_the_cost(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.say("Streamed.")
    with client.messages.create(model=MODEL, max_tokens=50, messages=USER, stream=True) as stream:
        events = list(stream)
    start, delta = events[0], next(e for e in events if e.type == "message_delta")
    record = harness.platform.get_usage(start.message.id)
    assert record is not None
    assert Decimal(str(delta.usage.model_dump()["cost"])) == record.cost


def test_max_tokens_cut_is_priced_too(client: anthropic.Anthropic, harness: AppHarness) -> None:
    harness.say("one two three four five six seven eight nine ten")
    message = client.messages.create(model=MODEL, max_tokens=3, messages=USER)
    record = harness.platform.get_usage(message.id)
    assert message.stop_reason == "max_tokens" and record is not None and record.output_tokens == 3
    assert Decimal(str(message.usage.model_dump()["cost"])) == record.cost


def test_failure_mid_stream_is_recorded_before_the_error_event(harness: AppHarness) -> None:
    harness.think_then_say("thinking for a while here", "never")
    harness.engine.fail_after_steps = 3
    body = {"model": MODEL, "max_tokens": 200, "messages": USER, "stream": True}
    headers = {"x-api-key": harness.secret, "anthropic-version": "2023-06-01"}
    message_id, record_at_error = "", None
    with httpx.stream("POST", f"{harness.base_url}/v1/messages", json=body, headers=headers, timeout=30) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = json.loads(line[len("data: "):])
            if data["type"] == "message_start":
                message_id = data["message"]["id"]
            elif data["type"] == "error":
                record_at_error = harness.platform.get_usage(message_id)
    assert record_at_error is not None
    assert record_at_error.status == "failed" and record_at_error.output_tokens == 3
