"""ServingCore over a scripted engine: events, usage, stops, tools, logprobs, aborts, errors."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from qwen35.serving.core import ServingCore
from qwen35.serving.errors import ContextLengthExceededError, InvalidRequestError, QueueFullError
from qwen35.serving.events import (
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallDone,
    ToolCallStart,
)
from qwen35.serving.request import GenerationRequest, ToolChoice, ToolSpec
from qwen35.serving.sampling import Sampling

USER = ({"role": "user", "content": "hi"},)
WEATHER = ToolSpec(
    "get_weather",
    "Weather of a city",
    {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
)


SAMPLING_FIELDS = {f.name for f in dataclasses.fields(Sampling)}


def chat(**kwargs: Any) -> GenerationRequest:
    """A chat request; sampler controls (temperature=..., n=..., stop=...) go into its `Sampling` value."""
    kwargs.setdefault("max_tokens", 256)
    sampling = Sampling(**{k: kwargs.pop(k) for k in list(kwargs) if k in SAMPLING_FIELDS})
    return GenerationRequest(request_id=kwargs.pop("request_id", "r1"), messages=USER, sampling=sampling, **kwargs)


async def collect(core: ServingCore, req: GenerationRequest) -> list[Any]:
    return [e async for e in core.generate(req)]


def texts(events: list[Any], kind: type) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))


def test_reasoning_then_answer_with_exact_usage(make_core, processor) -> None:
    script = "Let me think.</think>\n\nHello world<|im_end|>"
    core, engine = make_core(script, tokens_per_step=1)
    events = asyncio.run(collect(core, chat()))
    assert texts(events, ReasoningDelta) == "Let me think."
    assert texts(events, TextDelta) == "Hello world"
    finished = [e for e in events if isinstance(e, Finished)]
    assert len(finished) == 1 and finished[0].reason == "stop"
    ids = processor.tokenizer.encode(script)
    usage = finished[0].usage
    assert usage.output_tokens == len(ids)  # im_end counted once
    assert usage.reasoning_tokens == ids.index(processor.special_ids.think_end) + 1
    assert usage.input_tokens == len(engine.submitted[0].prompt_token_ids)
    # thinking is on by default with a budget, and the prompt opened <think>
    params = engine.submitted[0].params
    assert params.thinking_budget is not None and params.thinking_budget.think_end_id == processor.special_ids.think_end


@pytest.mark.parametrize("per_step", [1, 2, 3, 7])
def test_events_do_not_depend_on_step_size(make_core, per_step: int) -> None:
    script = "ab</think>\n\nx <tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n" \
             "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call><|im_end|>"
    core, _ = make_core(script, tokens_per_step=per_step)
    events = asyncio.run(collect(core, chat(tools=(WEATHER,))))
    assert texts(events, ReasoningDelta) == "ab"
    assert "</think>" not in texts(events, TextDelta)
    done = [e for e in events if isinstance(e, ToolCallDone)]
    assert len(done) == 1 and done[0].arguments == {"city": "Paris", "days": 3}
    start = next(e for e in events if isinstance(e, ToolCallStart))
    assert start.name == "get_weather" and start.call_id == done[0].call_id
    args = "".join(e.arguments_delta for e in events if isinstance(e, ToolCallArgsDelta))
    assert args == done[0].arguments_json
    assert [e.reason for e in events if isinstance(e, Finished)] == ["tool_calls"]


def test_tool_choice_none_offers_no_tools_and_parses_none(make_core) -> None:
    script = "</think>\n\n<tool_call>\n<function=get_weather>\n</function>\n</tool_call><|im_end|>"
    core, engine = make_core(script)
    events = asyncio.run(collect(core, chat(tools=(WEATHER,), tool_choice=ToolChoice("none"))))
    assert not any(isinstance(e, ToolCallStart) for e in events)
    assert "<tool_call>" in texts(events, TextDelta)
    prompt = core.tokenizer.decode(engine.submitted[0].prompt_token_ids)
    assert "get_weather" not in prompt


def test_malformed_tool_call_stays_text_and_finishes(make_core) -> None:
    script = "</think>\n\n<tool_call> not xml at all<|im_end|>"
    core, _ = make_core(script)
    events = asyncio.run(collect(core, chat(tools=(WEATHER,))))
    assert "<tool_call> not xml at all" in texts(events, TextDelta)
    assert [e.reason for e in events if isinstance(e, Finished)] == ["stop"]


def test_stop_string_ends_the_choice_and_aborts_the_engine(make_core) -> None:
    core, engine = make_core("</think>\n\nHello STOP and more text that is never shown<|im_end|>")
    events = asyncio.run(collect(core, chat(stop=("STOP",))))
    assert texts(events, TextDelta) == "Hello "
    finished = [e for e in events if isinstance(e, Finished)]
    assert finished[-1].reason == "stop_sequence" and finished[-1].stop_sequence == "STOP"
    assert engine.aborted == ["r1"]
    assert finished[-1].usage.output_tokens < len(core.tokenizer.encode("</think>\n\nHello STOP and more text"))


def test_n2_stop_in_one_sample_finishes_only_that_sample(make_core) -> None:
    core, engine = make_core("</think>\n\nA STOP tail tail tail<|im_end|>", "</think>\n\nB fine<|im_end|>")
    events = asyncio.run(collect(core, chat(n=2, stop=("STOP",))))
    by_choice = {i: "".join(e.text for e in events if isinstance(e, TextDelta) and e.index == i) for i in (0, 1)}
    assert by_choice == {0: "A ", 1: "B fine"}
    finished = [e for e in events if isinstance(e, Finished)]
    assert sorted(e.index for e in finished) == [0, 1]
    assert finished[-1].usage is not None and all(e.usage is None for e in finished[:-1])
    assert ("r1", 0) in engine.finished_samples


def test_length_finish(make_core) -> None:
    core, _ = make_core("</think>\n\n" + "word " * 50)
    events = asyncio.run(collect(core, GenerationRequest("r1", messages=USER, max_tokens=8, enable_thinking=False)))
    finished = [e for e in events if isinstance(e, Finished)]
    assert finished[0].reason == "length" and finished[0].usage.output_tokens == 8


def test_thinking_off_renders_the_no_thinking_prompt(make_core, processor) -> None:
    core, engine = make_core("Hello<|im_end|>")
    events = asyncio.run(collect(core, chat(reasoning_effort="none")))
    prompt = processor.tokenizer.decode(engine.submitted[0].prompt_token_ids)
    assert prompt.endswith("<think>\n\n</think>\n\n")
    assert engine.submitted[0].params.thinking_budget is None
    assert texts(events, TextDelta) == "Hello" and not texts(events, ReasoningDelta)
    assert events[-1].usage.reasoning_tokens == 0


def test_budget_is_fitted_into_max_tokens(make_core, processor) -> None:
    core, engine = make_core("x</think>\n\nok<|im_end|>")
    asyncio.run(collect(core, GenerationRequest("r1", messages=USER, max_tokens=100, thinking_budget=2048)))
    budget = engine.submitted[0].params.thinking_budget
    assert budget.max_thinking_tokens + len(budget.wind_down_ids) + 1 <= 100 - 50
    assert budget.wind_down_ids == processor.wind_down_ids() or budget.wind_down_ids == ()


def test_logprobs_cover_visible_answer_tokens_only(make_core, processor) -> None:
    core, _ = make_core("think</think>\n\nHello world<|im_end|>")
    events = asyncio.run(collect(core, chat(logprobs=2)))
    lps = [lp for e in events if isinstance(e, TextDelta) for lp in e.logprobs]
    assert "".join(lp.token for lp in lps) == "Hello world"
    assert all(len(lp.top_logprobs) == 2 and lp.bytes == list(lp.token.encode()) for lp in lps)


def test_without_think_end_leading_newlines_are_content(make_core, processor) -> None:
    # Thinking off: the template already closed the think block, so newlines the model writes are its answer
    # (a random-weight model does this; the text and logprobs must still equal what the engine generated).
    core, _ = make_core("\n\nHello<|im_end|>")
    events = asyncio.run(collect(core, chat(logprobs=0, enable_thinking=False)))
    assert texts(events, TextDelta) == "\n\nHello"
    lps = [lp for e in events if isinstance(e, TextDelta) for lp in e.logprobs]
    assert "".join(lp.token for lp in lps) == "\n\nHello"


def test_closing_early_aborts_and_keeps_partial_usage(make_core) -> None:
    core, engine = make_core("</think>\n\n" + "tok " * 100)

    async def run() -> Any:
        gen = core.generate(chat(enable_thinking=False))
        seen = 0
        async for event in gen:
            seen += isinstance(event, TextDelta)
            if seen == 3:
                break
        await gen.aclose()
        return gen

    gen = asyncio.run(run())
    assert engine.aborted == ["r1"]
    assert 0 < gen.usage.output_tokens < 100


def test_context_length_and_bad_params(make_core) -> None:
    core, _ = make_core("x", max_model_len=8)
    with pytest.raises(ContextLengthExceededError) as info:
        core.prepare(chat())
    assert info.value.param == "messages" and info.value.code == "context_length_exceeded"
    core, _ = make_core("x")
    prepared = core.prepare(chat(temperature=3.0))  # the engine validates its params once, when the work starts
    with pytest.raises(InvalidRequestError) as info2:
        asyncio.run(core.generate(prepared).start())
    assert info2.value.param == "temperature"
    with pytest.raises(InvalidRequestError):
        core.prepare(GenerationRequest("r", messages=({"role": "assistant", "content": "no user"},)))


def test_max_tokens_is_clamped_to_the_context_left(make_core) -> None:
    core, _ = make_core("x", max_model_len=64)
    prepared = core.prepare(chat(max_tokens=1000))
    assert prepared.params.max_tokens == 64 - len(prepared.prompt_token_ids)


def test_overloaded_engine_raises_at_start(make_core) -> None:
    core, _ = make_core("x", overloaded=True)

    async def run() -> None:
        await core.generate(chat()).start()

    with pytest.raises(QueueFullError):
        asyncio.run(run())


def test_raw_prompt_keeps_tags_as_text(make_core) -> None:
    core, _ = make_core("a <think> b </think> c")
    ids = core.tokenizer.encode("Once upon")
    events = asyncio.run(collect(core, GenerationRequest("r", prompt_token_ids=tuple(ids), max_tokens=50)))
    assert texts(events, TextDelta) == "a <think> b </think> c"
