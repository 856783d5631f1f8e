"""Streaming output parser: reasoning / answer / tool calls, independent of chunking, robust to malformed XML."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from qwen35.processor.detokenizer import IncrementalDetokenizer
from qwen35.processor.output_parser import (
    AnswerText,
    OutputParser,
    ParsedEvent,
    ReasoningText,
    ToolCallArgs,
    ToolCallBegin,
    ToolCallEnd,
    starts_in_reasoning,
)
from qwen35.processor.tokenizer import Tokenizer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "hourly": {"type": "boolean"},
                    "threshold": {"type": "number"},
                    "options": {"type": "object"},
                    "hours": {"type": "array", "items": {"type": "integer"}},
                    "note": {"type": ["string", "null"]},
                },
            },
        },
    },
    {"name": "run_code", "input_schema": {"type": "object", "properties": {"code": {"type": "string"}}}},
]

TWO_CALLS = (
    "I will check.\n\n"
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nSão Paulo\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n<parameter=hourly>\nTrue\n</parameter>\n"
    "<parameter=threshold>\n-2.5\n</parameter>\n<parameter=options>\n{\"units\": \"metric\"}\n</parameter>\n"
    "<parameter=hours>\n[6, 12]\n</parameter>\n<parameter=extra>\n{\"k\": [1]}\n</parameter>\n"
    "</function>\n</tool_call>\n"
    "<tool_call>\n<function=run_code>\n<parameter=code>\nif a < b:\n    print(\"<p>\\n</p>\")\n\n</parameter>\n"
    "</function>\n</tool_call>"
)


def _normalize(events: list[ParsedEvent]) -> list[ParsedEvent]:
    """Merge adjacent text / argument pieces: chunking may only change how finely they are cut."""
    out: list[ParsedEvent] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, ReasoningText) and isinstance(last, ReasoningText):
            out[-1] = ReasoningText(last.text + event.text)
        elif isinstance(event, AnswerText) and isinstance(last, AnswerText):
            out[-1] = AnswerText(last.text + event.text)
        elif isinstance(event, ToolCallArgs) and isinstance(last, ToolCallArgs) and last.call_index == event.call_index:
            out[-1] = ToolCallArgs(event.call_index, last.delta + event.delta)
        else:
            out.append(event)
    return out


def _parse(chunks: list[str], tools: Any = TOOLS, in_reasoning: bool = False) -> list[ParsedEvent]:
    parser = OutputParser(tools, in_reasoning=in_reasoning)
    events: list[ParsedEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.finish()
    _check_invariants(events, in_reasoning)
    return _normalize(events)


def _check_invariants(events: list[ParsedEvent], in_reasoning: bool) -> None:
    args: dict[int, str] = {}
    for event in events:
        assert not (isinstance(event, (AnswerText, ReasoningText)) and not event.text)
        if isinstance(event, ToolCallArgs):
            args[event.call_index] = args.get(event.call_index, "") + event.delta
        if isinstance(event, ToolCallEnd):
            assert args[event.call_index] == event.arguments_json
            assert json.loads(event.arguments_json) == event.arguments
            assert event.arguments_json == json.dumps(event.arguments, ensure_ascii=False)
    answer = "".join(e.text for e in events if isinstance(e, AnswerText))
    if in_reasoning:  # with thinking off the prompt closed the block: a </think> the model writes is answer text
        assert "</think>" not in answer


def _every_split(text: str, **kwargs: Any) -> list[ParsedEvent]:
    whole = _parse([text], **kwargs)
    for cut in range(len(text) + 1):
        assert _parse([text[:cut], text[cut:]], **kwargs) == whole, cut
    assert _parse(list(text), **kwargs) == whole
    rng = random.Random(len(text))
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, 5)))
        bounds = [0, *cuts, len(text)]
        assert _parse([text[a:b] for a, b in zip(bounds, bounds[1:])], **kwargs) == whole
    return whole


def test_reasoning_then_answer_every_split() -> None:
    events = _every_split("Let me think.\nStep two.\n</think>\n\nThe answer is 4.", in_reasoning=True)
    assert events == [ReasoningText("Let me think.\nStep two."), AnswerText("The answer is 4.")]


def test_reasoning_only_when_truncated() -> None:
    assert _parse(["still thinking </thi"], in_reasoning=True) == [ReasoningText("still thinking </thi")]


def test_thinking_off_but_model_opens_think_block() -> None:
    events = _every_split("<think>\nhmm\n</think>\n\nhi", in_reasoning=False)
    assert events == [ReasoningText("hmm"), AnswerText("hi")]


def test_stray_think_end_never_reaches_answer_with_thinking_on() -> None:
    events = _every_split("Plan.</think>\n\nAnswer part one.</think>\n\nPart two.", in_reasoning=True)
    assert events == [ReasoningText("Plan."), AnswerText("Answer part one.Part two.")]


def test_stray_think_end_with_thinking_off_is_answer_text_verbatim() -> None:
    # the prompt already closed the think block: the answer is exactly what the engine generated
    text = "Answer part one.</think>\n\nPart two."
    assert _every_split(text, in_reasoning=False) == [AnswerText(text)]
    assert _every_split("</think>\n\nHi", in_reasoning=False) == [AnswerText("</think>\n\nHi")]
    # a think block the model opened itself is still closed by its first </think>
    events = _every_split("<think>\nhmm\n</think>\n\nhi</think>", in_reasoning=False)
    assert events == [ReasoningText("hmm"), AnswerText("hi")]


def test_two_tool_calls_every_split() -> None:
    events = _every_split(TWO_CALLS)
    assert events[0] == AnswerText("I will check.")
    begins = [e for e in events if isinstance(e, ToolCallBegin)]
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert [(b.call_index, b.name) for b in begins] == [(0, "get_weather"), (1, "run_code")]
    assert ends[0].arguments == {
        "city": "São Paulo",
        "days": 3,
        "hourly": True,
        "threshold": -2.5,
        "options": {"units": "metric"},
        "hours": [6, 12],
        "extra": {"k": [1]},  # not in the schema: JSON when it parses
    }
    assert ends[1].arguments == {"code": 'if a < b:\n    print("<p>\\n</p>")\n'}
    assert not any(isinstance(e, AnswerText) for e in events[1:])


def test_reasoning_then_tool_call_with_real_tokens(tokenizer: Tokenizer) -> None:
    text = "The user wants weather.\n</think>\n\n" + TWO_CALLS + "<|im_end|>"
    ids = tokenizer.encode(text)
    detok = IncrementalDetokenizer(tokenizer)
    chunks = [detok.add([i]) for i in ids] + [detok.flush()]
    events = _parse(chunks, in_reasoning=True)
    assert events == _parse([tokenizer.decode(ids, skip_special_tokens=True)], in_reasoning=True)
    assert events[0] == ReasoningText("The user wants weather.")
    assert sum(isinstance(e, ToolCallEnd) for e in events) == 2


def test_string_arguments_stream_before_the_parameter_closes() -> None:
    parser = OutputParser(TOOLS)
    first = parser.feed("<tool_call>\n<function=run_code>\n<parameter=code>\nprint(1)\n")
    second = parser.feed("print(2)\n")
    streamed = "".join(e.delta for e in first + second if isinstance(e, ToolCallArgs))
    # The value streams as it arrives; only the newline that may precede </parameter> is held.
    assert streamed == '{"code": "print(1)\\nprint(2)'
    rest = parser.feed("</parameter>\n</function>\n</tool_call>") + parser.finish()
    end = next(e for e in rest if isinstance(e, ToolCallEnd))
    assert end.arguments == {"code": "print(1)\nprint(2)"}


@pytest.mark.parametrize(
    "text",
    [
        "Use the <tool_call> tag like this.",
        "<tool_call> not xml",
        "<tool_call>\n<func",
        "<tool_call>\n<function=>\n</tool_call>",
        "<tool_call>\n<function=a<b>",
        "<tool_call>" + " " * 100 + "<function=f>",
        "Before.\n\n<tool_call>\n{\"name\": \"f\"}\n</tool_call> after",
    ],
)
def test_literal_tool_call_tag_stays_text(text: str) -> None:
    events = _every_split(text)
    assert not any(isinstance(e, (ToolCallBegin, ToolCallEnd)) for e in events)
    assert "".join(e.text for e in events if isinstance(e, AnswerText)) == text


def test_literal_tag_is_released_without_waiting_for_the_end() -> None:
    parser = OutputParser(TOOLS)
    released = parser.feed("Text <tool_call>\n<function=" + "x" * 300)
    assert "".join(e.text for e in released if isinstance(e, AnswerText)).startswith("Text <tool_call>")
    assert len(parser._buf) <= 300 + 16  # bounded: only what follows the literal tag, never the whole stream


def test_no_tools_means_no_tool_parsing() -> None:
    text = "<tool_call>\n<function=f>\n</function>\n</tool_call>"
    assert _parse([text], tools=None) == [AnswerText(text)]


@pytest.mark.parametrize(
    "text, arguments",
    [
        ("<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</function>\n</tool_call>", {"city": "Rome"}),
        ("<tool_call>\n<function=get_weather>\n<parameter=days>\n2\n</parameter>\n</tool_call>", {"days": 2}),
        ("<tool_call>\n<function=get_weather>\njunk here\n<parameter=days>\n2\n</parameter>\n</function>", {"days": 2}),
        ("<tool_call>\n<function=get_weather>\n<parameter=city>\nA\n</parameter>\n"
         "<parameter=city>\nB\n</parameter>\n</function>\n</tool_call>", {"city": "A"}),
        ("<tool_call>\n<function=get_weather>\n<parameter=days>\nmany\n</parameter>\n</function>", {"days": "many"}),
        ("<tool_call>\n<function=get_weather>\n<parameter=note>\nnull\n</parameter>\n</function>", {"note": None}),
    ],
)  # fmt: skip
def test_malformed_calls_recover(text: str, arguments: dict[str, Any]) -> None:
    events = _every_split(text)
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert len(ends) == 1 and ends[0].arguments == arguments


def test_truncated_call_is_closed_at_finish() -> None:
    events = _parse(["<tool_call>\n<function=run_code>\n<parameter=code>\nwhile True:\n    pa"])
    assert events[-1] == ToolCallEnd(0, "run_code", {"code": "while True:\n    pa"}, '{"code": "while True:\\n    pa"}')


def test_text_after_tool_calls_is_answer() -> None:
    text = "<tool_call>\n<function=run_code>\n</function>\n</tool_call>\n\nDone, see above."
    events = _every_split(text)
    assert events[-1] == AnswerText("Done, see above.")


def test_fuzz_chunking_and_invariants() -> None:
    pieces = ["</think>", "<think>", "<tool_call>", "</tool_call>", "<function=get_weather>", "<function=run_code>",
              "<parameter=days>", "<parameter=code>", "</parameter>", "</function>", "\n", "\n\n", " ", "a", "42",
              "<", "</", "{\"x\": 1}", "é🙂"]  # fmt: skip
    rng = random.Random(99)
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        in_reasoning = rng.random() < 0.5
        whole = _parse([text], in_reasoning=in_reasoning)
        for _ in range(3):
            k = min(len(text) - 1, rng.randint(1, 8))
            bounds = [0, *sorted(rng.sample(range(1, len(text)), k=k)), len(text)] if len(text) > 1 else [0, len(text)]
            chunks = [text[a:b] for a, b in zip(bounds, bounds[1:])]
            assert _parse(chunks, in_reasoning=in_reasoning) == whole, (text, chunks)


def test_starts_in_reasoning() -> None:
    assert starts_in_reasoning("<|im_start|>assistant\n<think>\n")
    assert not starts_in_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n")


# ------------------------------------------------------------------------------------ control tokens by id


class _SpecialThink:
    """The real tokenizer as a community conversion flags it: <think>, </think>, <tool_call>, </tool_call> are
    special, so decode(skip_special_tokens=True) drops them."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._flagged = set(tokenizer.special_ids.control_tags)

    def token_bytes(self, token_id: int) -> bytes:
        return self._tokenizer.token_bytes(token_id)

    def is_special(self, token_id: int) -> bool:
        return token_id in self._flagged or self._tokenizer.is_special(token_id)


def _parse_tokens(ids: list[int], detok: IncrementalDetokenizer, **kwargs: Any) -> list[ParsedEvent]:
    parser = OutputParser(TOOLS, **kwargs)
    events: list[ParsedEvent] = []
    for token_id in ids:
        events += parser.feed_token(token_id, detok.add([token_id]))
    events += parser.feed(detok.flush()) + parser.finish()
    _check_invariants(events, kwargs.get("in_reasoning", False))
    return _normalize(events)


def test_control_tokens_are_recognised_by_id_when_flagged_special(tokenizer: Tokenizer) -> None:
    text = "The user wants weather.\n</think>\n\n" + TWO_CALLS + "<|im_end|>"
    ids = tokenizer.encode(text)
    control = tokenizer.special_ids.control_tags
    assert tokenizer.special_ids.think_end in ids and tokenizer.special_ids.tool_call_start in ids
    flagged = _SpecialThink(tokenizer)
    assert IncrementalDetokenizer(flagged).add(ids).count("</think>") == 0  # what the bug looked like
    expected = _parse([tokenizer.decode(ids, skip_special_tokens=True)], in_reasoning=True)
    assert expected[0] == ReasoningText("The user wants weather.")
    # the detokenizer drops the flagged tokens, the parser still sees them by id
    skipping = IncrementalDetokenizer(flagged)
    assert _parse_tokens(ids, skipping, control_ids=control, in_reasoning=True) == expected
    # or the detokenizer keeps them by id: the tag is not doubled
    keeping = IncrementalDetokenizer(flagged, keep_ids=control)
    assert keeping.add(ids).count("</think>") == 1
    keeping = IncrementalDetokenizer(flagged, keep_ids=control)
    assert _parse_tokens(ids, keeping, control_ids=control, in_reasoning=True) == expected


def test_think_end_by_id_with_empty_text_ends_reasoning(tokenizer: Tokenizer) -> None:
    think_end = tokenizer.special_ids.think_end
    parser = OutputParser(None, in_reasoning=True, control_ids=tokenizer.special_ids.control_tags)
    events = parser.feed_token(1, "Plan it.\n") + parser.feed_token(think_end, "")
    assert not parser.in_reasoning
    events += parser.feed_token(2, "\n\nAnswer.") + parser.finish()
    assert _normalize(events) == [ReasoningText("Plan it."), AnswerText("Answer.")]


def test_tags_spelled_in_sub_word_tokens_are_still_recognised(tokenizer: Tokenizer) -> None:
    control = tokenizer.special_ids.control_tags
    pieces = ["Plan", ".\n", "</", "think", ">", "\n\n", "<tool", "_call", ">\n<function=run_code>\n",
              "<parameter=code>\nx\n</parameter>\n</function>\n</", "tool_call", ">"]  # fmt: skip
    parser = OutputParser(TOOLS, in_reasoning=True, control_ids=control)
    events: list[ParsedEvent] = []
    for position, piece in enumerate(pieces):
        events += parser.feed_token(1000 + position, piece)  # ordinary ids, not the control tokens
    events += parser.finish()
    events = _normalize(events)
    assert events[0] == ReasoningText("Plan.")
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert ends == [ToolCallEnd(0, "run_code", {"code": "x"}, '{"code": "x"}')]
    assert not any(isinstance(e, AnswerText) for e in events)


# ------------------------------------------------------------------------- <function=...> without <tool_call>

BARE_CALL = (
    "<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>"
)


@pytest.mark.parametrize(
    "text",
    [BARE_CALL, BARE_CALL + "\n</tool_call>", "Let me check.\n\n" + BARE_CALL, "\n" + BARE_CALL + "\n"],
)
def test_function_without_tool_call_opener_is_a_call_with_tools(text: str) -> None:
    events = _every_split(text)
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert len(ends) == 1 and ends[0].name == "get_weather" and ends[0].arguments == {"city": "Rome", "days": 2}
    answer = "".join(e.text for e in events if isinstance(e, AnswerText))
    assert answer == ("Let me check." if text.startswith("Let") else "")


def test_two_bare_function_calls_and_text_after() -> None:
    events = _every_split(BARE_CALL + "\n" + BARE_CALL.replace("Rome", "Oslo") + "\n\nDone.")
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert [e.arguments["city"] for e in ends] == ["Rome", "Oslo"] and [e.call_index for e in ends] == [0, 1]
    assert events[-1] == AnswerText("Done.")


def test_function_without_opener_stays_text_without_tools() -> None:
    assert _every_split(BARE_CALL, tools=None) == [AnswerText(BARE_CALL)]


@pytest.mark.parametrize("text", ["See <function=>.", "<function=a<b> x", "use <function=" + "y" * 300])
def test_malformed_bare_function_stays_text(text: str) -> None:
    events = _every_split(text)
    assert not any(isinstance(e, (ToolCallBegin, ToolCallEnd)) for e in events)
    assert "".join(e.text for e in events if isinstance(e, AnswerText)) == text


@pytest.mark.parametrize("opener", ["<tool_call>\n", ""], ids=["tagged", "bare"])
def test_call_of_a_function_not_in_tools_stays_text(opener: str) -> None:
    text = opener + "<function=delete_everything>\n<parameter=city>\nParis\n</parameter>\n</function>"
    events = _every_split(text)
    assert not any(isinstance(e, (ToolCallBegin, ToolCallEnd)) for e in events)
    assert "".join(e.text for e in events if isinstance(e, AnswerText)) == text
