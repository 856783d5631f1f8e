"""Web search on Anthropic Messages, end to end (real engine on the tiny checkpoint, the official anthropic SDK,
fake Linkup): the `web_search_20250305` / `web_search_20260209` server tool, server_tool_use +
web_search_tool_result blocks, usage.server_tool_use, max_uses, stream event order, history echoed back."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_linkup import FAKE_KEY, Reply
from web_search_app import SearchApp, running_search_app

MODEL = "qwen3-5-4b"


@pytest.fixture(scope="module")
def app(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchApp]:
    with running_search_app(tiny_checkpoint, tmp_path_factory.mktemp("ws-messages")) as running:
        yield running


def client(app: SearchApp):  # type: ignore[no-untyped-def]
    import anthropic

    return anthropic.Anthropic(base_url=app.base_url, api_key=app.secret, max_retries=0)


def body(max_uses: int = 2, kind: str = "web_search_20250305", **extra):  # type: ignore[no-untyped-def]
    out = {"model": MODEL, "max_tokens": 600, "extra_body": {"temperature": 0.0},
           "messages": [{"role": "user", "content": "Weather in Paris?"}],
           "tools": [{"type": kind, "name": "web_search", "max_uses": max_uses,
                      "allowed_domains": ["weather.example.com", "en.wikipedia.org"]}],
           "tool_choice": {"type": "tool", "name": "web_search"}, "thinking": {"type": "disabled"}}
    out.update(extra)
    return out


@pytest.mark.parametrize("kind", ["web_search_20250305", "web_search_20260209"])
def test_server_tool_blocks_and_usage(app: SearchApp, kind: str) -> None:
    app.fake.script(Reply())
    message = client(app).messages.create(**body(2, kind))
    types = [b.type for b in message.content]
    assert types[:4] == ["server_tool_use", "web_search_tool_result", "server_tool_use", "web_search_tool_result"]
    first, result = message.content[0], message.content[1]
    assert first.id.startswith("srvtoolu_") and first.name == "web_search" and set(first.input) == {"query"}
    assert result.tool_use_id == first.id
    assert [(r.url, r.title) for r in result.content] == [
        ("https://weather.example.com/paris", "Paris weather today"), ("https://en.wikipedia.org/wiki/Paris", "Paris - Wikipedia")]
    opaque = json.loads(base64.b64decode(result.content[0].encrypted_content))
    assert opaque["content"].startswith("Sunny")
    assert message.usage.server_tool_use.web_search_requests == 2
    assert message.usage.cache_read_input_tokens > 0
    assert app.fake.received[0].body["includeDomains"] == ["weather.example.com", "en.wikipedia.org"]
    assert app.platform.get_usage(message.id).web_search_calls == 2
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert FAKE_KEY not in message.model_dump_json()


def test_stream_event_order_and_final_message(app: SearchApp) -> None:
    app.fake.script(Reply())
    with client(app).messages.stream(**body(1)) as stream:
        events = list(stream)
        final = stream.get_final_message()
    starts = [(e.index, e.content_block.type) for e in events if e.type == "content_block_start"]
    assert starts[:2] == [(0, "server_tool_use"), (1, "web_search_tool_result")]
    seq = [e.type for e in events if e.type.startswith("content_block") and getattr(e, "index", None) in (0, 1)]
    assert seq == ["content_block_start", "content_block_delta", "content_block_stop",
                   "content_block_start", "content_block_stop"]
    assert final.content[0].input == {"query": final.content[0].input["query"]}
    assert final.usage.server_tool_use.web_search_requests == 1
    assert [e.type for e in events][-2:] == ["message_delta", "message_stop"]


def test_failed_search_is_an_error_block(app: SearchApp) -> None:
    app.fake.script(Reply(429, {"error": "slow"}, headers={"Retry-After": "0"}))
    message = client(app).messages.create(**body(1))
    result = message.content[1]
    assert result.type == "web_search_tool_result" and result.content.error_code == "too_many_requests"
    assert message.usage.server_tool_use.web_search_requests == 0
    assert app.platform.get_usage(message.id).web_search_calls == 0
    app.fake.script(Reply())


def test_history_with_server_blocks_is_accepted(app: SearchApp) -> None:
    app.fake.script(Reply())
    first = client(app).messages.create(**body(1))
    follow = body(1, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "And tomorrow?"}], max_tokens=40, tool_choice={"type": "auto"})
    message = client(app).messages.create(**follow)
    assert message.usage.server_tool_use.web_search_requests in (0, 1)


def test_refusals(app: SearchApp) -> None:
    import anthropic

    bad = body(1)
    bad["tools"][0]["name"] = "search"
    with pytest.raises(anthropic.BadRequestError, match="must be named"):
        client(app).messages.create(**bad)
    bad = body(1)
    bad["tools"][0]["max_uses"] = 0
    with pytest.raises(anthropic.BadRequestError, match="max_uses"):
        client(app).messages.create(**bad)
