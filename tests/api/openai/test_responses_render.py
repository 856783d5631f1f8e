"""Scripted serving events -> Responses stream and Response: exact order, gapless numbering, stable ids."""

from __future__ import annotations

import itertools
import json

from openai.types.responses import Response as SdkResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from qwen35.api.openai.responses_render import ResponseRenderer
from qwen35.api.openai.responses_types import Response
from qwen35.serving.events import (
    Finished,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallArgsDelta,
    ToolCallDone,
    ToolCallStart,
    Usage,
)
from scripted_app import assert_matches_spec

_SDK_EVENT = TypeAdapter(ResponseStreamEvent)
USAGE = Usage(input_tokens=40, cached_input_tokens=16, output_tokens=25, reasoning_tokens=9)


def _ids() -> object:
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


def _run(events: list, **kwargs: object) -> tuple[list[dict], dict]:
    base = Response(id="resp_1", created_at=1, status="in_progress", model="qwen3-5-4b")
    renderer = ResponseRenderer(base, id_factory=_ids(), **kwargs)  # type: ignore[arg-type]
    wire = [e.to_wire() for e in renderer.start()]
    for event in events:
        wire.extend(e.to_wire() for e in renderer.feed(event))
    for payload in wire:
        _SDK_EVENT.validate_python(payload)
        assert_matches_spec("openai", "ResponseStreamEvent", payload)
    body = renderer.response().to_wire()
    SdkResponse.model_validate(body)
    assert_matches_spec("openai", "Response", body)
    return wire, body


LP = TokenLogprob(token="Hi", token_id=7, logprob=-0.5, bytes=[72, 105], top_logprobs=[("Hi", 7, -0.5, [72, 105])])

FULL = [
    ReasoningDelta(0, "Think "),
    ReasoningDelta(0, "hard."),
    TextDelta(0, "Hi", logprobs=[LP]),
    TextDelta(0, " there"),
    ToolCallStart(0, 0, "call_x", "lookup"),
    ToolCallArgsDelta(0, 0, '{"q": '),
    ToolCallArgsDelta(0, 0, '"a"}'),
    ToolCallDone(0, 0, "call_x", "lookup", {"q": "a"}, '{"q": "a"}'),
    Finished(0, "tool_calls", usage=USAGE),
]


def test_full_sequence() -> None:
    wire, body = _run(FULL, include_logprobs=True)
    assert [e["sequence_number"] for e in wire] == list(range(len(wire)))
    assert [e["type"] for e in wire] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    done_items = [e["item"] for e in wire if e["type"] == "response.output_item.done"]
    added_items = [e["item"] for e in wire if e["type"] == "response.output_item.added"]
    assert [i["id"] for i in added_items] == [i["id"] for i in done_items] == ["rs_0", "msg_1", "fc_2"]
    assert wire[-1]["response"]["output"] == done_items == body["output"]
    assert body["output"][0]["content"] == [{"type": "reasoning_text", "text": "Think hard."}]
    assert body["output"][1]["content"][0]["text"] == "Hi there"
    assert body["output"][1]["content"][0]["logprobs"][0]["token"] == "Hi"
    assert body["output"][2]["call_id"] == "call_x"
    assert json.loads(body["output"][2]["arguments"]) == {"q": "a"}
    text_deltas = "".join(e["delta"] for e in wire if e["type"] == "response.output_text.delta")
    assert text_deltas == next(e["text"] for e in wire if e["type"] == "response.output_text.done")


def test_usage_only_in_terminal_event() -> None:
    wire, body = _run(FULL)
    assert all(e["response"].get("usage") is None for e in wire[:2])
    assert body["usage"] == {
        "input_tokens": 40,
        "input_tokens_details": {"cached_tokens": 16, "cache_write_tokens": 0},
        "output_tokens": 25,
        "output_tokens_details": {"reasoning_tokens": 9},
        "total_tokens": 65,
    }
    assert wire[0]["response"]["id"] == wire[1]["response"]["id"] == wire[-1]["response"]["id"] == "resp_1"


def test_length_gives_incomplete() -> None:
    wire, body = _run([TextDelta(0, "partial"), Finished(0, "length", usage=USAGE)])
    assert wire[-1]["type"] == "response.incomplete"
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"


def test_error_gives_failed() -> None:
    wire, body = _run([TextDelta(0, "x"), Finished(0, "error", error="engine died")])
    assert wire[-1]["type"] == "response.failed"
    assert body["status"] == "failed" and body["error"] == {"code": "server_error", "message": "engine died"}
    assert [e["sequence_number"] for e in wire] == list(range(len(wire)))


def test_summary_requested_reports_reasoning_as_summary() -> None:
    wire, body = _run([ReasoningDelta(0, "r"), TextDelta(0, "a"), Finished(0, "stop")], summarize=True)
    assert body["output"][0]["summary"] == [{"type": "summary_text", "text": "r"}]
    assert "response.reasoning_summary_text.delta" in [e["type"] for e in wire]


def test_logprobs_absent_unless_included() -> None:
    wire, _ = _run([TextDelta(0, "Hi", logprobs=[LP]), Finished(0, "stop")])
    assert all(e["logprobs"] == [] for e in wire if e["type"] == "response.output_text.delta")


def test_logprobs_of_textless_tokens_ride_on_the_next_delta() -> None:
    first = TokenLogprob(token="\ufffd", token_id=1, logprob=-0.1, bytes=[0xE2])
    second = TokenLogprob(token="\ufffd", token_id=2, logprob=-0.2, bytes=[0x82, 0xAC])
    wire, body = _run([TextDelta(0, "", logprobs=[first]), TextDelta(0, "€", logprobs=[second]), Finished(0, "stop")],
                      include_logprobs=True)
    assert [lp["logprob"] for lp in body["output"][0]["content"][0]["logprobs"]] == [-0.1, -0.2]
    delta = next(e for e in wire if e["type"] == "response.output_text.delta")
    assert delta["delta"] == "€" and len(delta["logprobs"]) == 2
