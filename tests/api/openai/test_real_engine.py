"""End to end on the real engine: `qwen35.engine.build` over a tiny random checkpoint in the official layout,
the real processor from that checkpoint, the app on uvicorn, and the unchanged openai SDK (strict client)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from qwen35.platform.platform import Platform
from qwen35.processor import Processor
from scripted_app import running_real_app

MODEL = "qwen3-5-4b"
USER = [{"role": "user", "content": "Say hi."}]


@dataclass
class Real:
    client: openai.OpenAI
    processor: Processor
    platform: Platform


@pytest.fixture(scope="module")
def real(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    with running_real_app(tiny_checkpoint, tmp_path_factory.mktemp("real-platform")) as app:
        client = openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=app.secret, max_retries=0,
                               _strict_response_validation=True)
        yield Real(client, app.processor, app.platform)


def test_seeded_sampling_is_reproducible(real: Real) -> None:
    kwargs: dict[str, Any] = dict(model=MODEL, messages=USER, max_tokens=12, temperature=1.0, seed=1234,
                                  reasoning_effort="none")
    first = real.client.chat.completions.create(**kwargs)
    second = real.client.chat.completions.create(**kwargs)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage.completion_tokens == second.usage.completion_tokens > 0
    assert first.choices[0].message.reasoning_content is None  # type: ignore[attr-defined]


def test_logit_bias_steers_the_real_sampler(real: Real) -> None:
    token = real.processor.tokenizer.encode(" hi")
    assert len(token) == 1
    completion = real.client.chat.completions.create(
        model=MODEL, messages=USER, max_tokens=5, temperature=0, logit_bias={str(token[0]): 100},
        extra_body={"enable_thinking": False}, logprobs=True, top_logprobs=2,
    )
    choice = completion.choices[0]
    assert choice.message.content == " hi" * 5 and choice.finish_reason == "length"
    assert [t.token for t in choice.logprobs.content] == [" hi"] * 5
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)


def test_thinking_budget_is_enforced_and_counted(real: Real) -> None:
    max_tokens = 96
    completion = real.client.chat.completions.create(
        model=MODEL, messages=USER, max_tokens=max_tokens, temperature=0,
        extra_body={"thinking_budget": 1024, "ignore_eos": True},
    )
    usage = completion.usage
    wind_down = len(real.processor.wind_down_ids())
    # the 1024 budget does not fit into 96 tokens: it shrinks so that the answer keeps 48 tokens
    assert usage.completion_tokens_details.reasoning_tokens <= max_tokens - 48
    assert usage.completion_tokens_details.reasoning_tokens >= wind_down + 1  # the forced close was produced
    assert usage.completion_tokens == max_tokens and completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.reasoning_content  # type: ignore[attr-defined]
    assert "</think>" not in (completion.choices[0].message.content or "")
    answer_tokens = usage.completion_tokens - usage.completion_tokens_details.reasoning_tokens
    assert answer_tokens >= 48


def test_stream_n2_with_usage(real: Real) -> None:
    stream = real.client.chat.completions.create(
        model=MODEL, messages=USER, max_tokens=6, n=2, temperature=0.8, seed=3, stream=True,
        stream_options={"include_usage": True}, reasoning_effort="none", extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length", "length"]


def test_completions_on_the_real_engine(real: Real) -> None:
    completion = real.client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, temperature=0,
                                                extra_body={"ignore_eos": True})
    assert completion.usage.completion_tokens == 4 and completion.choices[0].finish_reason == "length"
    echoed = real.client.with_options().completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=2, temperature=0, echo=True,
        extra_body={"ignore_eos": True},
    )
    assert echoed.choices[0].text.startswith("Once upon a time")


def test_repeated_prefix_is_cached_and_billed_at_the_cached_rate(real: Real) -> None:
    from decimal import Decimal

    system = {"role": "system", "content": "You are a careful assistant. " * 12}
    first = real.client.chat.completions.create(model=MODEL, messages=[system, *USER], max_tokens=3, temperature=0,
                                                reasoning_effort="none")
    second = real.client.chat.completions.create(
        model=MODEL, messages=[system, *USER, {"role": "assistant", "content": "Hi!"},
                               {"role": "user", "content": "Again."}], max_tokens=3, temperature=0,
        reasoning_effort="none")
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached > 0 and cached % 16 == 0 and cached < first.usage.prompt_tokens
    record = real.platform.get_usage(second.id)
    assert record is not None and record.cached_input_tokens == cached
    prompt, output = second.usage.prompt_tokens, second.usage.completion_tokens
    expected = (Decimal(prompt - cached) * Decimal("0.04") + Decimal(cached) * Decimal("0.02")
                + Decimal(output) * Decimal("0.07")) / 1_000_000
    assert record.cost == expected
