"""Web search on Chat Completions, end to end (real engine on the tiny checkpoint, official openai SDK, fake
Linkup): web_search_options turns it on, tool_choice naming web_search forces it, usage reports the searches, the
ledger bills them; legacy Completions has no tools and refuses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_linkup import Reply
from web_search_app import SearchApp, running_search_app

MODEL = "qwen3-5-4b"
FORCED = {"type": "function", "function": {"name": "web_search"}}


@pytest.fixture(scope="module")
def app(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchApp]:
    with running_search_app(tiny_checkpoint, tmp_path_factory.mktemp("ws-chat"), max_uses=2) as running:
        yield running


def client(app: SearchApp):  # type: ignore[no-untyped-def]
    import openai

    return openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=app.secret, max_retries=0)


def chat(app: SearchApp, **kwargs):  # type: ignore[no-untyped-def]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "web_search_options": {"search_context_size": "low"}, "tool_choice": FORCED,
            "max_completion_tokens": 500, "temperature": 0.0, "extra_body": {"enable_thinking": False}}
    body.update(kwargs)
    return client(app).chat.completions.create(**body)


def test_forced_searches_up_to_the_server_limit(app: SearchApp) -> None:
    app.fake.script(Reply())
    completion = chat(app)
    assert len(app.fake.received) == 2  # the server's --max-web-searches
    assert all(r.body["maxResults"] == 3 for r in app.fake.received)  # search_context_size low
    message = completion.choices[0].message
    assert not message.tool_calls  # searches are the server's, never the client's
    assert completion.usage.model_extra["server_tool_use"] == {"web_search_requests": 2}
    assert completion.usage.prompt_tokens_details.cached_tokens > 0
    record = app.platform.get_usage(completion.id)
    assert record.web_search_calls == 2 and record.cost == __import__("decimal").Decimal(
        str(completion.usage.model_extra["cost"]))


def test_streamed_usage_counts_the_searches(app: SearchApp) -> None:
    app.fake.script(Reply())
    chunks = list(chat(app, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.model_extra["server_tool_use"] == {"web_search_requests": 2}
    assert all(not (c.choices and c.choices[0].delta.tool_calls) for c in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1


def test_without_web_search_options_no_search_runs(app: SearchApp) -> None:
    app.fake.script(Reply())
    completion = client(app).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_completion_tokens=5)
    assert "server_tool_use" not in (completion.usage.model_extra or {}) and not app.fake.received


def test_completions_refuse_web_search(app: SearchApp) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client(app).completions.create(model=MODEL, prompt="hi", max_tokens=3,
                                       extra_body={"web_search_options": {}})
    assert "web_search_options" in str(info.value)
