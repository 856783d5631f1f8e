"""A client that goes away aborts its engine request; every request's usage lands once in the platform ledger."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

MODEL = "qwen3-5-4b"
USER = [{"role": "user", "content": "Hi"}]


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_stream_disconnect_aborts_and_bills_what_was_made(oai: Any) -> None:
    oai.script("</think>\n\n" + "word " * 400)
    oai.engine.step_delay_s = 0.02
    headers = {"Authorization": f"Bearer {oai.secret}"}
    body = {"model": MODEL, "messages": USER, "stream": True}
    with httpx.stream("POST", f"{oai.base_url}/v1/chat/completions", json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        received = [next(lines) for _ in range(12)]
    assert any(line.startswith("data: ") for line in received)
    request_id = oai.engine.submitted[-1].request_id
    assert wait_for(lambda: request_id in oai.engine.aborted)
    assert wait_for(lambda: oai.platform.get_usage(request_id) is not None)
    record = oai.platform.get_usage(request_id)
    assert record.status == "cancelled" and 0 < record.output_tokens < 400


def test_non_stream_disconnect_aborts(oai: Any) -> None:
    oai.script("</think>\n\n" + "word " * 400)
    oai.engine.step_delay_s = 0.02
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{oai.base_url}/v1/chat/completions", json={"model": MODEL, "messages": USER},
            headers={"Authorization": f"Bearer {oai.secret}"}, timeout=0.5,
        )
    request_id = oai.engine.submitted[-1].request_id
    assert wait_for(lambda: request_id in oai.engine.aborted)


def test_usage_is_recorded_once_with_the_response_numbers(client: openai.OpenAI, oai: Any) -> None:
    oai.script("Thinking.</think>\n\nDone.<|im_end|>")
    oai.engine.num_cached_tokens = 5
    completion = client.chat.completions.create(model=MODEL, messages=USER)
    assert wait_for(lambda: oai.platform.get_usage(completion.id) is not None)
    record = oai.platform.get_usage(completion.id)
    usage = completion.usage
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens, record.reasoning_tokens) == (
        usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens, usage.completion_tokens,
        usage.completion_tokens_details.reasoning_tokens,
    )
    assert record.status == "completed" and record.endpoint == "chat.completions"


def test_rejected_requests_are_not_billed(client: openai.OpenAI, oai: Any) -> None:
    before = len(oai.platform.list_usage(limit=10_000))
    oai.engine.overloaded = True
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=USER)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=USER, temperature=5)
    assert len(oai.platform.list_usage(limit=10_000)) == before


def test_usage_cost_is_the_ledger_cost_at_the_rate_card(client: openai.OpenAI, oai: Any) -> None:
    from decimal import Decimal

    oai.script("Thinking.</think>\n\nDone.<|im_end|>")
    oai.engine.num_cached_tokens = 5
    completion = client.chat.completions.create(model=MODEL, messages=USER)
    usage = completion.usage.model_dump()
    record = oai.platform.get_usage(completion.id)  # recorded before the response was sent
    assert record is not None
    cached, prompt, output = 5, usage["prompt_tokens"], usage["completion_tokens"]
    expected = (Decimal(prompt - cached) * Decimal("0.04") + Decimal(cached) * Decimal("0.02")
                + Decimal(output) * Decimal("0.07")) / Decimal(1_000_000)
    assert record.cost == expected
    assert Decimal(str(usage["cost"])) == expected
    stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True,
                                            stream_options={"include_usage": True})
    last = [chunk for chunk in stream][-1]
    assert last.usage is not None and last.usage.model_dump()["cost"] > 0
    assert oai.platform.get_usage(last.id) is not None
