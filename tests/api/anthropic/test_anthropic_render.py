"""Scripted serving events -> Anthropic stream and Message: exact order, indexes, usage, SDK strict validation."""

from __future__ import annotations

import json

import pytest
from anthropic.types import Message as SdkMessage
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from qwen35.api.anthropic.render import GenerationFailed, MessageRenderer, thinking_signature
from qwen35.serving.events import (
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from scripted_app import assert_matches_spec

_SDK_EVENT = TypeAdapter(RawMessageStreamEvent)


def _run(events: list, **kwargs: object) -> tuple[list[dict], dict]:
    renderer = MessageRenderer("msg_1", "qwen3-5-4b", num_prompt_tokens=20, **kwargs)  # type: ignore[arg-type]
    wire = [e.to_wire() for e in renderer.start()]
    for event in events:
        wire.extend(e.to_wire() for e in renderer.feed(event))
    for payload in wire:
        _SDK_EVENT.validate_python(payload)  # strict, as `_strict_response_validation=True` does
        assert_matches_spec("anthropic", "MessageStreamEvent", payload)
    body = renderer.message().to_wire()
    SdkMessage.model_validate(body)
    assert_matches_spec("anthropic", "Message", body)
    return wire, body


USAGE = Usage(input_tokens=20, cached_input_tokens=8, output_tokens=30, reasoning_tokens=12)

FULL = [
    ReasoningDelta(0, "Let me "),
    ReasoningDelta(0, "think."),
    TextDelta(0, "Calling"),
    TextDelta(0, " now."),
    ToolCallStart(0, 0, "call_a", "get_weather"),
    ToolCallArgsDelta(0, 0, '{"city": '),
    ToolCallArgsDelta(0, 0, '"Paris", "days": 3}'),
    ToolCallDone(0, 0, "call_a", "get_weather", {"city": "Paris", "days": 3}, '{"city": "Paris", "days": 3}'),
    Finished(0, "tool_calls", usage=USAGE),
]


def test_full_sequence_order_and_indexes() -> None:
    wire, body = _run(FULL)
    kinds = [(e["type"], e.get("index"), e.get("delta", {}).get("type")) for e in wire]
    assert kinds == [
        ("message_start", None, None),
        ("content_block_start", 0, None),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, None),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, None),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    partial = "".join(e["delta"]["partial_json"] for e in wire if e.get("delta", {}).get("type") == "input_json_delta")
    assert json.loads(partial) == body["content"][2]["input"] == {"city": "Paris", "days": 3}
    assert body["content"][0] == {"type": "thinking", "thinking": "Let me think.", "signature": thinking_signature("Let me think.")}
    assert body["content"][1]["text"] == "Calling now."
    assert body["content"][2]["id"] == "call_a"
    assert body["stop_reason"] == "tool_use"


def test_usage_excludes_cache_reads_and_is_cumulative() -> None:
    wire, body = _run(FULL)
    start_usage = wire[0]["message"]["usage"]
    assert start_usage["input_tokens"] == 20 and start_usage["output_tokens"] == 0
    delta = wire[-2]
    assert delta["usage"]["output_tokens"] == 30
    assert delta["usage"]["input_tokens"] == 12 and delta["usage"]["cache_read_input_tokens"] == 8
    assert body["usage"]["input_tokens"] + body["usage"]["cache_read_input_tokens"] == USAGE.input_tokens
    assert body["usage"]["output_tokens_details"] == {"thinking_tokens": 12}


@pytest.mark.parametrize(
    ("finished", "stop_reason", "stop_sequence"),
    [
        (Finished(0, "stop"), "end_turn", None),
        (Finished(0, "length"), "max_tokens", None),
        (Finished(0, "stop_sequence", stop_sequence="END"), "stop_sequence", "END"),
    ],
)
def test_stop_reasons(finished: Finished, stop_reason: str, stop_sequence: str | None) -> None:
    wire, body = _run([TextDelta(0, "hi"), finished])
    assert wire[-2]["delta"] == {
        "stop_reason": stop_reason, "stop_sequence": stop_sequence, "stop_details": None, "container": None
    }
    assert (body["stop_reason"], body["stop_sequence"]) == (stop_reason, stop_sequence)


def test_whitespace_only_text_before_tool_call_makes_no_block() -> None:
    events = [
        TextDelta(0, "\n\n"),
        ToolCallStart(0, 0, "call_b", "f"),
        ToolCallDone(0, 0, "call_b", "f", {}, "{}"),
        Finished(0, "tool_calls"),
    ]
    wire, body = _run(events)
    assert [b["type"] for b in body["content"]] == ["tool_use"]
    # the Done without streamed args still yields one input_json_delta whose JSON is the input
    assert [e["delta"]["partial_json"] for e in wire if e["type"] == "content_block_delta"] == ["{}"]


def test_thinking_display_omitted_keeps_signature_only() -> None:
    wire, body = _run([ReasoningDelta(0, "secret"), TextDelta(0, "ok"), Finished(0, "stop")], thinking_display="omitted")
    assert not [e for e in wire if e.get("delta", {}).get("type") == "thinking_delta"]
    assert body["content"][0] == {"type": "thinking", "thinking": "", "signature": thinking_signature("secret")}


def test_error_finish_raises_for_the_route() -> None:
    renderer = MessageRenderer("msg_2", "m")
    renderer.start()
    with pytest.raises(GenerationFailed, match="boom"):
        renderer.feed(Finished(0, "error", error="boom"))


def test_empty_generation_is_a_valid_message() -> None:
    wire, body = _run([Finished(0, "stop", usage=Usage(5, 0, 1, 0))])
    assert body["content"] == [] and body["stop_reason"] == "end_turn"
    assert [e["type"] for e in wire] == ["message_start", "message_delta", "message_stop"]
