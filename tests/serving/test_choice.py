"""ChoiceDecoder: control tokens by id (whatever the tokenizer's special flags), bare `<function=` calls, the
answer verbatim with thinking off, and reasoning counts that follow the split."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qwen35.engine.request import FinishReason, SequenceDelta
from qwen35.processor import Processor
from qwen35.processor.output_parser import OutputParser
from qwen35.serving.choice import ChoiceConfig, ChoiceDecoder, TokenText
from qwen35.serving.events import (
    Finished,
    ReasoningDelta,
    ServingEvent,
    TextDelta,
    ToolCallDone,
    ToolCallStart,
)
from qwen35.serving.request import GenerationRequest, ToolSpec

WEATHER = ToolSpec(
    "get_weather",
    "Weather of a city",
    {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
)
BARE_CALL = (
    "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>"
)


class FlaggedTokenizer:
    """The real tokenizer as community conversions ship it: `<think>` / `</think>` marked special (so a
    skip_special_tokens detokenizer would drop them)."""

    def __init__(self, processor: Processor) -> None:
        self._tokenizer = processor.tokenizer
        ids = processor.special_ids
        self._flagged = {ids.think_start, ids.think_end}

    def token_bytes(self, token_id: int) -> bytes:
        return self._tokenizer.token_bytes(token_id)

    def is_special(self, token_id: int) -> bool:
        return token_id in self._flagged or self._tokenizer.is_special(token_id)


def _decoder(
    processor: Processor, tokenizer: Any, *, thinking: bool, tools: tuple[ToolSpec, ...] = (),
    stop: tuple[str, ...] = (), by_id: bool = True,
) -> ChoiceDecoder:
    control = processor.control_tags if by_id else {}
    config = ChoiceConfig(
        stop=stop, include_stop_str_in_output=False, in_reasoning=thinking,
        think_end_id=processor.special_ids.think_end, raw_output=False, skip_special_tokens=True, tools=tools,
        num_logprobs=None, parallel_tool_calls=True, control_ids=control,
    )
    tool_dicts = [t.to_template() for t in tools]

    def make_parser() -> OutputParser:
        return OutputParser(tool_dicts, in_reasoning=thinking, control_ids=control)

    return ChoiceDecoder(0, config, tokenizer, TokenText(tokenizer), make_parser)


def _run(decoder: ChoiceDecoder, ids: list[int], stop_id: int | None) -> list[ServingEvent]:
    events: list[ServingEvent] = []
    for position, token_id in enumerate(ids):
        last = position == len(ids) - 1
        events += decoder.feed(SequenceDelta(
            0, [token_id], None, position + 1, 0,
            finish_reason=FinishReason.STOP if last else None, stop_token_id=stop_id if last else None,
        ))  # fmt: skip
    return events


def _text(events: list[ServingEvent], kind: type) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))


@pytest.mark.parametrize("stop", [(), ("never-there",)])
def test_special_flagged_think_tokens_split_reasoning_and_answer(processor: Processor, stop: tuple[str, ...]) -> None:
    flagged = FlaggedTokenizer(processor)
    ids = processor.tokenizer.encode("Let me think.\n</think>\n\nThe answer is 4.")
    think_end = processor.special_ids.think_end
    assert think_end in ids and flagged.is_special(think_end)
    decoder = _decoder(processor, flagged, thinking=True, stop=stop)
    events = _run(decoder, ids, processor.tokenizer.eos_token_id)
    assert _text(events, ReasoningDelta) == "Let me think."
    assert _text(events, TextDelta) == "The answer is 4."
    assert decoder.num_reasoning_tokens == ids.index(think_end) + 1
    assert decoder.num_output_tokens == len(ids) + 1  # + the eos that ended it


def test_flagged_think_tokens_without_ids_were_the_bug(processor: Processor) -> None:
    # what by-id recognition fixes: a parser that only reads the skip-special text never sees </think>
    flagged = FlaggedTokenizer(processor)
    ids = processor.tokenizer.encode("Let me think.\n</think>\n\nThe answer is 4.")
    events = _run(_decoder(processor, flagged, thinking=True, by_id=False), ids, None)
    assert _text(events, TextDelta) == "" and "The answer is 4." in _text(events, ReasoningDelta)


def test_model_opened_think_block_with_flagged_tokens_and_thinking_off(processor: Processor) -> None:
    flagged = FlaggedTokenizer(processor)
    ids = processor.tokenizer.encode("<think>\nhmm\n</think>\n\nhi")
    decoder = _decoder(processor, flagged, thinking=False)
    events = _run(decoder, ids, None)
    assert _text(events, ReasoningDelta) == "hmm" and _text(events, TextDelta) == "hi"
    # reasoning tokens follow the split: from after <think> through </think>
    assert decoder.num_reasoning_tokens == ids.index(processor.special_ids.think_end)


def test_stray_think_end_with_thinking_off_is_kept_verbatim(processor: Processor) -> None:
    text = "Part one.</think>\n\nPart two."
    decoder = _decoder(processor, FlaggedTokenizer(processor), thinking=False)
    events = _run(decoder, processor.tokenizer.encode(text), None)
    assert _text(events, TextDelta) == text and not _text(events, ReasoningDelta)
    assert decoder.num_reasoning_tokens == 0


def test_sub_word_think_end_ends_reasoning_and_its_count(processor: Processor) -> None:
    tokenizer = processor.tokenizer
    pieces = ["Plan", ".", "</", "think", ">", "\n\n", "Hello"]
    ids = [tokenizer.encode(p)[0] for p in pieces]
    assert all(len(tokenizer.encode(p)) == 1 for p in pieces) and processor.special_ids.think_end not in ids
    decoder = _decoder(processor, tokenizer, thinking=True)
    events = _run(decoder, ids, None)
    assert _text(events, ReasoningDelta) == "Plan." and _text(events, TextDelta) == "Hello"
    assert decoder.num_reasoning_tokens == 5  # through the ">" that completed </think>


def test_bare_function_call_is_a_tool_call_with_tools(processor: Processor) -> None:
    ids = processor.tokenizer.encode("Checking.\n\n" + BARE_CALL)
    decoder = _decoder(processor, processor.tokenizer, thinking=False, tools=(WEATHER,))
    events = _run(decoder, ids, processor.tokenizer.eos_token_id)
    done = [e for e in events if isinstance(e, ToolCallDone)]
    assert len(done) == 1 and done[0].name == "get_weather" and done[0].arguments == {"city": "Paris", "days": 3}
    assert _text(events, TextDelta) == "Checking."
    assert [e.reason for e in events if isinstance(e, Finished)] == ["tool_calls"]


def test_bare_function_stays_text_without_tools(processor: Processor) -> None:
    ids = processor.tokenizer.encode(BARE_CALL)
    events = _run(_decoder(processor, processor.tokenizer, thinking=False), ids, None)
    assert _text(events, TextDelta) == BARE_CALL and not any(isinstance(e, ToolCallStart) for e in events)


# -- through the serving core (scripted engine) ----------------------------------------------------------------


async def _collect(core: Any, req: GenerationRequest) -> list[ServingEvent]:
    return [e async for e in core.generate(req)]


@pytest.mark.parametrize("per_step", [1, 3])
def test_core_parses_a_bare_function_call(make_core: Any, per_step: int) -> None:
    core, _ = make_core(f"I should call.</think>\n\n{BARE_CALL}<|im_end|>", tokens_per_step=per_step)
    req = GenerationRequest("r1", messages=({"role": "user", "content": "hi"},), max_tokens=256, tools=(WEATHER,))
    events = asyncio.run(_collect(core, req))
    assert _text(events, ReasoningDelta) == "I should call."
    done = [e for e in events if isinstance(e, ToolCallDone)]
    assert len(done) == 1 and done[0].arguments == {"city": "Paris", "days": 3}
    assert _text(events, TextDelta) == ""
    assert [e.reason for e in events if isinstance(e, Finished)] == ["tool_calls"]


def test_core_keeps_a_stray_think_end_when_thinking_is_off(make_core: Any) -> None:
    core, _ = make_core("Sure.</think>\n\nDone.<|im_end|>")
    req = GenerationRequest("r1", messages=({"role": "user", "content": "hi"},), max_tokens=64, enable_thinking=False)
    events = asyncio.run(_collect(core, req))
    assert _text(events, TextDelta) == "Sure.</think>\n\nDone." and not _text(events, ReasoningDelta)
    assert events[-1].usage is not None and events[-1].usage.reasoning_tokens == 0


def test_core_maps_bad_json_string_arguments_to_invalid_request(make_core: Any) -> None:
    from qwen35.serving.errors import InvalidRequestError

    core, _ = make_core("ok<|im_end|>")
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}
    messages = ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "user", "content": "again"})
    with pytest.raises(InvalidRequestError) as info:
        core.prepare(GenerationRequest("r1", messages=messages, tools=(WEATHER,)))
    assert info.value.param == "messages" and "not valid JSON" in str(info.value)
    call["function"]["arguments"] = '{"city": "Paris"}'  # type: ignore[index]
    prompt = core.tokenizer.decode(list(core.prepare(GenerationRequest("r1", messages=messages)).prompt_token_ids))
    assert "<parameter=city>\nParis\n</parameter>" in prompt
