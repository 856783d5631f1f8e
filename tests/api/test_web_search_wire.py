"""Web search wire shapes on every API, checked against the official OpenAPI specs, over the scripted engine (a
protocol-shape test: round k of the script answers after k tool responses) and a fake Linkup: web_search_call
items and url_citation annotations (Responses), message / delta annotations (Chat), server_tool_use and
web_search_tool_result blocks (Anthropic), with the answer text citing "[1]" and a source URL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fake_linkup import FAKE_KEY, fake_linkup
from qwen35.serving.linkup import LinkupProvider
from qwen35.serving.web_search import WebSearchService
from scripted_app import AppHarness, assert_matches_spec, running_app

CALL = "<tool_call>\n<function=web_search>\n<parameter=query>\nparis weather\n</parameter>\n</function>\n</tool_call>"
ANSWER = "Sunny today [1]. More: https://en.wikipedia.org/wiki/Paris"
MODEL = "qwen3-5-4b"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    with fake_linkup() as fake, running_app(tmp_path_factory.mktemp("ws-wire")) as running:
        provider = LinkupProvider(api_key=FAKE_KEY, base_url=fake.base_url, backoff_s=0.01)
        running.app.state.core.web_search = WebSearchService(provider)
        yield running


@pytest.fixture(autouse=True)
def script(harness: AppHarness) -> None:
    response_id = harness.tokenizer.special_ids.tool_response_start
    harness.say(lambda prompt, params: CALL if prompt.count(response_id) == 0 else ANSWER)


def post(harness: AppHarness, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {harness.secret}", "x-api-key": harness.secret,
               "anthropic-version": "2023-06-01"}
    response = httpx.post(f"{harness.base_url}{path}", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert FAKE_KEY not in response.text
    return response


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


RESPONSES = {"model": MODEL, "input": "Weather?", "tools": [{"type": "web_search"}],
             "include": ["web_search_call.action.sources"], "enable_thinking": False}


def test_responses_body(harness: AppHarness) -> None:
    body = post(harness, "/v1/responses", RESPONSES).json()
    assert_matches_spec("openai", "Response", body)
    search, message = body["output"]
    assert search["type"] == "web_search_call" and search["status"] == "completed"
    assert search["action"]["query"] == "paris weather"
    assert [s["url"] for s in search["action"]["sources"]] == [
        "https://weather.example.com/paris", "https://en.wikipedia.org/wiki/Paris"]
    part = message["content"][0]
    assert part["text"] == ANSWER
    spans = [(ANSWER[a["start_index"]:a["end_index"]], a["url"], a["title"]) for a in part["annotations"]]
    assert spans == [("[1]", "https://weather.example.com/paris", "Paris weather today"),
                     ("https://en.wikipedia.org/wiki/Paris", "https://en.wikipedia.org/wiki/Paris", "Paris - Wikipedia")]
    assert body["usage"]["server_tool_use"] == {"web_search_requests": 1}


def test_responses_stream(harness: AppHarness) -> None:
    events = sse(post(harness, "/v1/responses", {**RESPONSES, "stream": True}))
    for event in events:
        assert_matches_spec("openai", "ResponseStreamEvent", event)
    types = [e["type"] for e in events]
    assert types.index("response.web_search_call.searching") < types.index("response.web_search_call.completed") \
        < types.index("response.output_text.delta")
    added = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [a["annotation_index"] for a in added] == [0, 1]
    assert types.index("response.output_text.annotation.added") < types.index("response.output_text.done")
    assert events[-1]["response"]["output"][1]["content"][0]["annotations"][0]["url"] == \
        "https://weather.example.com/paris"


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Weather?"}], "web_search_options": {},
        "enable_thinking": False}


def test_chat_body_and_stream(harness: AppHarness) -> None:
    body = post(harness, "/v1/chat/completions", CHAT).json()
    assert_matches_spec("chat", "CreateChatCompletionResponse", body)
    message = body["choices"][0]["message"]
    assert message["content"] == ANSWER and "tool_calls" not in message
    cites = [(ANSWER[a["url_citation"]["start_index"]:a["url_citation"]["end_index"]], a["url_citation"]["url"])
             for a in message["annotations"]]
    assert cites == [("[1]", "https://weather.example.com/paris"),
                     ("https://en.wikipedia.org/wiki/Paris", "https://en.wikipedia.org/wiki/Paris")]
    assert body["usage"]["server_tool_use"] == {"web_search_requests": 1}
    chunks = sse(post(harness, "/v1/chat/completions", {**CHAT, "stream": True,
                                                          "stream_options": {"include_usage": True}}))
    for chunk in chunks:
        assert_matches_spec("chat", "CreateChatCompletionStreamResponse", chunk)
    streamed = [a for c in chunks if c["choices"] for a in c["choices"][0]["delta"].get("annotations", [])]
    assert streamed == message["annotations"]
    assert chunks[-1]["usage"]["server_tool_use"] == {"web_search_requests": 1}


MESSAGES = {"model": MODEL, "max_tokens": 200, "messages": [{"role": "user", "content": "Weather?"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
            "thinking": {"type": "disabled"}}


def test_anthropic_body_and_stream(harness: AppHarness) -> None:
    body = post(harness, "/v1/messages", MESSAGES).json()
    assert_matches_spec("anthropic", "Message", body)
    use, result, text = body["content"]
    assert use["type"] == "server_tool_use" and use["input"] == {"query": "paris weather"}
    assert result["type"] == "web_search_tool_result" and result["tool_use_id"] == use["id"]
    assert text["type"] == "text" and text["text"] == ANSWER
    assert [(c["type"], c["url"], c["cited_text"][:5]) for c in text["citations"]] == [
        ("web_search_result_location", "https://weather.example.com/paris", "Sunny"),
        ("web_search_result_location", "https://en.wikipedia.org/wiki/Paris", "Paris")]
    assert body["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}
    assert body["stop_reason"] == "end_turn"
    events = sse(post(harness, "/v1/messages", {**MESSAGES, "stream": True}))
    for event in events:
        assert_matches_spec("anthropic", "MessageStreamEvent", event)
    assert [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"] == [
        "server_tool_use", "web_search_tool_result", "text"]
    cited = [e["delta"]["citation"] for e in events if e.get("delta", {}).get("type") == "citations_delta"]
    assert cited == text["citations"]
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["usage"]["server_tool_use"]["web_search_requests"] == 1


def test_ledger_has_one_search_per_request(harness: AppHarness) -> None:
    response = post(harness, "/v1/responses", RESPONSES).json()
    record = harness.platform.get_usage(response["id"])
    assert record.web_search_calls == 1


def test_responses_chain_after_a_search(harness: AppHarness) -> None:
    first = post(harness, "/v1/responses", {**RESPONSES, "store": True}).json()
    follow = post(harness, "/v1/responses", {**RESPONSES, "input": "And tomorrow?",
                                             "previous_response_id": first["id"]}).json()
    assert follow["status"] == "completed"
    # the earlier search is not replayed to the model; its answer (which cites it) is
    prompt = harness.last_prompt_text()
    assert ANSWER in prompt and prompt.count("<tool_response>") == 1  # only this turn's own search


def test_anthropic_count_tokens_counts_the_web_search_tool(harness: AppHarness) -> None:
    bare = {"model": MODEL, "messages": [{"role": "user", "content": "Weather?"}]}
    plain = post(harness, "/v1/messages/count_tokens", bare).json()["input_tokens"]
    with_tool = post(harness, "/v1/messages/count_tokens", {**bare, "tools": MESSAGES["tools"]}).json()["input_tokens"]
    assert with_tool > plain  # the web_search function the model would see is in the prompt
