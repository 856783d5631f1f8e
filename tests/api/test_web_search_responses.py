"""Web search on the Responses API, end to end: the real engine (tiny random checkpoint, the call forced with
tool_choice so the loop is deterministic), the official openai SDK, a local fake Linkup, the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from fake_linkup import FAKE_KEY, Reply
from web_search_app import SearchApp, running_search_app

MODEL = "qwen3-5-4b"
FEE = Decimal("0.013")
FORCED = {"type": "web_search_preview"}


@pytest.fixture(scope="module")
def app(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchApp]:
    with running_search_app(tiny_checkpoint, tmp_path_factory.mktemp("ws-responses")) as running:
        yield running


def client(app: SearchApp):  # type: ignore[no-untyped-def]
    import openai

    return openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=app.secret, max_retries=0)


def create(app: SearchApp, **kwargs):  # type: ignore[no-untyped-def]
    body = {"model": MODEL, "input": "What is the weather in Paris?", "tools": [{"type": "web_search"}],
            "tool_choice": FORCED, "max_output_tokens": 600, "temperature": 0.0,
            "extra_body": {"enable_thinking": False}}
    body.update(kwargs)
    return client(app).responses.create(**body)


def test_two_forced_searches_then_an_answer_billed_exactly(app: SearchApp) -> None:
    app.fake.script(Reply())
    response = create(app, max_tool_calls=2, include=["web_search_call.action.sources"])
    kinds = [item.type for item in response.output]
    assert kinds[:2] == ["web_search_call", "web_search_call"] and "web_search_call" not in kinds[2:]
    searches = response.output[:2]
    assert all(s.status == "completed" and s.action.type == "search" for s in searches)
    assert [str(src.url) for src in searches[0].action.sources] == [
        "https://weather.example.com/paris", "https://en.wikipedia.org/wiki/Paris"]
    assert [r.body["q"] for r in app.fake.received] == [s.action.query for s in searches]
    usage = response.usage
    assert usage.model_extra["server_tool_use"] == {"web_search_requests": 2}
    # round 2 and 3 reuse the earlier rounds' prompts from the prefix cache
    assert usage.input_tokens_details.cached_tokens > 0
    record = app.platform.get_usage(response.id)
    assert record.web_search_calls == 2
    tokens = (Decimal(record.input_tokens - record.cached_input_tokens) * Decimal("0.04")
              + Decimal(record.cached_input_tokens) * Decimal("0.02") + Decimal(record.output_tokens) * Decimal("0.07"))
    assert record.cost == tokens / 1_000_000 + 2 * FEE
    assert Decimal(str(usage.model_extra["cost"])) == record.cost
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens) == (
        usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.output_tokens)


def test_streamed_event_order(app: SearchApp) -> None:
    app.fake.script(Reply())
    events = list(create(app, max_tool_calls=1, stream=True))
    types = [e.type for e in events]
    start = types.index("response.output_item.added")
    assert types[start:start + 6] == [
        "response.output_item.added", "response.web_search_call.in_progress", "response.web_search_call.searching",
        "response.web_search_call.completed", "response.output_item.done", "response.output_item.added"]
    assert events[start].item.type == "web_search_call" and events[start].item.status == "in_progress"
    assert events[start + 4].item.status == "completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert final.usage.model_extra["server_tool_use"] == {"web_search_requests": 1}
    assert app.platform.get_usage(final.id).web_search_calls == 1


def test_provider_failure_is_a_failed_call_not_billed(app: SearchApp) -> None:
    app.fake.script(Reply(503, {"detail": f"down {FAKE_KEY}"}))
    response = create(app, max_tool_calls=1)
    search = response.output[0]
    assert search.type == "web_search_call" and search.status == "failed"
    assert response.usage.model_extra["server_tool_use"] == {"web_search_requests": 0}
    assert app.platform.get_usage(response.id).web_search_calls == 0
    assert len(app.fake.received) == 3  # retried with backoff, then given up
    assert FAKE_KEY not in response.model_dump_json()


def test_provider_timeout_is_a_failed_call(app: SearchApp) -> None:
    app.fake.script(Reply(delay_s=1.5))
    response = create(app, max_tool_calls=1)
    assert response.output[0].status == "failed"
    assert app.platform.get_usage(response.id).web_search_calls == 0
    app.fake.script(Reply())


def test_credits_for_one_search_only(app: SearchApp) -> None:
    app.platform.create_account("thrifty")
    # the token hold (max 600 output tokens, a short prompt: ~$0.00006) plus one search fee and a little
    app.platform.add_credits("thrifty", "0.0135")
    _, secret = app.platform.create_key("thrifty", account="thrifty")
    import openai

    thrifty = openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=secret, max_retries=0)
    app.fake.script(Reply())
    response = thrifty.responses.create(
        model=MODEL, input="Weather in Paris?", tools=[{"type": "web_search"}], tool_choice=FORCED,
        max_output_tokens=600, temperature=0.0, max_tool_calls=3, extra_body={"enable_thinking": False})
    statuses = [i.status for i in response.output if i.type == "web_search_call"]
    assert statuses[0] == "completed" and "failed" in statuses[1:]
    assert len(app.fake.received) == 1
    record = app.platform.get_usage(response.id)
    assert record.web_search_calls == 1
    account = app.platform.get_account("thrifty")
    assert account.balance_nanos >= 0 and account.held_nanos == 0


def test_refusals_are_400s(app: SearchApp) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        create(app, tools=[{"type": "web_search"}, {"type": "web_search_preview"}])
    assert info.value.body["param"] == "tools[1]"
    with pytest.raises(openai.BadRequestError) as info:
        create(app, tools=[{"type": "web_search", "search_context_size": "huge"}])
    assert info.value.body["param"] == "tools[0].search_context_size"
    with pytest.raises(openai.BadRequestError) as info:
        create(app, tools=[], tool_choice=FORCED)
    assert info.value.body["param"] == "tool_choice"


def test_no_key_in_logs(app: SearchApp) -> None:
    assert app.log  # the server did log (retries, requests)
    assert not [line for line in app.log if FAKE_KEY in line]
