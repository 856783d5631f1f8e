"""usage.cost on /v1/responses: the ledger's exact cost at the rate card in the non-stream body and in
`response.completed` / `response.incomplete`, with the ledger record (and the stored response) written before the
client hears the end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from scripted_app import AppHarness, assert_matches_spec, running_app

MODEL = "qwen3-5-4b"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    with running_app(tmp_path_factory.mktemp("responses-metering")) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset_engine(harness: AppHarness) -> None:
    harness.reset()


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def client(request: pytest.FixtureRequest, harness: AppHarness) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{harness.base_url}/v1", api_key=harness.secret, max_retries=0,
        _strict_response_validation=request.param,
    )


def rate_card_cost(uncached: int, cached: int, output: int) -> Decimal:
    """The seed's rate card: input $0.04/M, cached input $0.02/M, output $0.07/M (reasoning included)."""
    return (Decimal(uncached) * Decimal("0.04") + Decimal(cached) * Decimal("0.02")
            + Decimal(output) * Decimal("0.07")) / Decimal(1_000_000)


def _expected(usage: dict[str, Any]) -> Decimal:
    cached = usage["input_tokens_details"]["cached_tokens"]  # OpenAI semantics: input_tokens includes cached
    return rate_card_cost(usage["input_tokens"] - cached, cached, usage["output_tokens"])


def test_usage_cost_is_the_ledger_cost_at_the_rate_card(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("Think first.", "Hello there!")
    harness.engine.num_cached_tokens = 3
    response = client.responses.create(model=MODEL, input="Hi")
    record = harness.platform.get_usage(response.id)  # recorded before the response was sent
    assert record is not None and record.endpoint == "responses" and record.status == "completed"
    usage = response.usage.model_dump()
    assert usage["input_tokens_details"]["cached_tokens"] == 3
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens) == (
        usage["input_tokens"], 3, usage["output_tokens"]
    )
    expected = _expected(usage)
    assert record.cost == expected > 0
    assert Decimal(str(usage["cost"])) == expected
    stored = client.responses.retrieve(response.id)  # the stored copy is the priced one
    assert Decimal(str(stored.usage.model_dump()["cost"])) == expected
    assert_matches_spec("openai", "Response", response.model_dump(mode="json", exclude_unset=True))


def _stream_until_end(harness: AppHarness, body: dict[str, Any]) -> tuple[list[dict[str, Any]], Any, int]:
    """Raw SSE; at the terminal event (before reading on) looks the request up in the ledger and the store."""
    events: list[dict[str, Any]] = []
    record, stored_status = None, 0
    headers = {"authorization": f"Bearer {harness.secret}"}
    with httpx.stream("POST", f"{harness.base_url}/v1/responses", json={**body, "stream": True}, headers=headers,
                      timeout=30) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: "):])
            events.append(event)
            if event["type"] in ("response.completed", "response.incomplete", "response.failed"):
                response_id = event["response"]["id"]
                record = harness.platform.get_usage(response_id)
                stored_status = httpx.get(
                    f"{harness.base_url}/v1/responses/{response_id}", headers=headers, timeout=30
                ).status_code
    return events, record, stored_status


def test_stream_completed_carries_the_cost_and_the_record_exists_first(harness: AppHarness) -> None:
    harness.think_then_say("Plan.", "Streamed and priced.")
    harness.engine.num_cached_tokens = 2
    events, record, stored_status = _stream_until_end(harness, {"model": MODEL, "input": "Hi"})
    final = events[-1]
    assert final["type"] == "response.completed"
    assert all("usage" not in e["response"] for e in events[:2])  # created / in_progress: no usage yet
    assert record is not None and record.status == "completed"
    assert stored_status == 200  # chaining or retrieving right after the end finds it
    usage = final["response"]["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == 2
    assert record.cost == _expected(usage) == Decimal(str(usage["cost"]))
    assert_matches_spec("openai", "ResponseStreamEvent", final)


def test_stream_incomplete_is_priced_and_recorded_as_incomplete(harness: AppHarness) -> None:
    harness.say("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen")
    events, record, _ = _stream_until_end(harness, {"model": MODEL, "input": "Hi", "max_output_tokens": 16})
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert record is not None and record.status == "incomplete" and record.output_tokens == 16
    assert Decimal(str(final["response"]["usage"]["cost"])) == record.cost == _expected(final["response"]["usage"])


def test_sdk_stream_helper_accepts_the_cost(client: openai.OpenAI, harness: AppHarness) -> None:
    harness.think_then_say("Plan.", "Streamed.")
    with client.responses.stream(model=MODEL, input="Hi") as stream:
        final = stream.get_final_response()
    record = harness.platform.get_usage(final.id)
    assert record is not None and final.output_text == "Streamed."
    assert Decimal(str(final.usage.model_dump()["cost"])) == record.cost
