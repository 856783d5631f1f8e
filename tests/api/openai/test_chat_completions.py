"""POST /v1/chat/completions through the unchanged openai SDK (default and strict clients, raw streams and the
.stream() helper) and raw HTTP, on the real app and serving core over a scripted engine."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

MODEL = "qwen3-5-4b"
USER = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather forecast",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TOOL_CALL = (
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"
)


def sse_frames(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an OpenAI stream, checking the framing (data-only frames)."""
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = []
    for frame in response.text.split("\n\n"):
        if not frame or frame == ": keep-alive":  # the comment every stream opens with (proxies)
            continue
        assert frame.startswith("data: ") and "\n" not in frame, frame
        frames.append(frame[len("data: ") :])
    return frames


def raw_stream(oai: Any, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    response = httpx.post(
        f"{oai.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": USER, "stream": True, **body},
        headers={"Authorization": f"Bearer {oai.secret}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    frames = sse_frames(response)
    assert frames[-1] == "[DONE]"
    return [json.loads(f) for f in frames[:-1]], frames


def test_non_stream_reasoning_answer_usage(client: openai.OpenAI, oai: Any, validate_schema: Any) -> None:
    oai.script("Let me think.</think>\n\nHello there!<|im_end|>")
    oai.engine.num_cached_tokens = 3
    completion = client.chat.completions.create(model=MODEL, messages=USER)
    choice = completion.choices[0]
    assert completion.object == "chat.completion" and completion.model == MODEL
    assert choice.message.content == "Hello there!"
    assert choice.message.reasoning_content == "Let me think."  # type: ignore[attr-defined]
    assert choice.message.reasoning == "Let me think."  # type: ignore[attr-defined]
    assert choice.finish_reason == "stop"
    usage = completion.usage
    prompt = oai.engine.submitted[-1].prompt_token_ids
    generated = oai.processor.tokenizer.encode("Let me think.</think>\n\nHello there!<|im_end|>")
    assert usage.prompt_tokens == len(prompt) and usage.prompt_tokens_details.cached_tokens == 3
    assert usage.completion_tokens == len(generated)
    assert usage.completion_tokens_details.reasoning_tokens == generated.index(oai.processor.special_ids.think_end) + 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    validate_schema("CreateChatCompletionResponse", completion.model_dump(mode="json", exclude_unset=True))


def test_raw_body_matches_the_spec(oai: Any, validate_schema: Any) -> None:
    oai.script("x</think>\n\nHi<|im_end|>")
    response = httpx.post(
        f"{oai.base_url}/v1/chat/completions", json={"model": MODEL, "messages": USER, "logprobs": True,
                                                     "top_logprobs": 2},
        headers={"Authorization": f"Bearer {oai.secret}"}, timeout=30,
    )
    assert response.status_code == 200 and response.headers["x-request-id"].startswith("req_")
    body = response.json()
    validate_schema("CreateChatCompletionResponse", body)
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0  # always present


def test_n2_choices(client: openai.OpenAI, oai: Any) -> None:
    oai.script("</think>\n\nfirst<|im_end|>", "</think>\n\nsecond<|im_end|>")
    completion = client.chat.completions.create(model=MODEL, messages=USER, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert [c.message.content for c in completion.choices] == ["first", "second"]


def test_stream_raw_shape_with_usage(oai: Any, validate_schema: Any) -> None:
    oai.script("Hmm.</think>\n\nHello world<|im_end|>", "Ok.</think>\n\nBye<|im_end|>")
    chunks, _ = raw_stream(oai, {"n": 2, "stream_options": {"include_usage": True}})
    for chunk in chunks:
        validate_schema("CreateChatCompletionStreamResponse", chunk)
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    *body, last = chunks
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in body)
    for index in (0, 1):
        deltas = [c["choices"][0] for c in body if c["choices"][0]["index"] == index]
        assert "role" in deltas[0]["delta"] and all("role" not in d["delta"] for d in deltas[1:])
        finishes = [d["finish_reason"] for d in deltas if d["finish_reason"] is not None]
        assert finishes == ["stop"] and deltas[-1]["finish_reason"] == "stop"
    first_indexes = []
    for c in body:
        if c["choices"][0]["index"] not in first_indexes:
            first_indexes.append(c["choices"][0]["index"])
    assert first_indexes == [0, 1]
    content0 = "".join(c["choices"][0]["delta"].get("content") or "" for c in body if c["choices"][0]["index"] == 0)
    reasoning0 = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in body
                         if c["choices"][0]["index"] == 0)
    assert (content0, reasoning0) == ("Hello world", "Hmm.")


def test_stream_without_include_usage_has_no_usage(oai: Any) -> None:
    chunks, _ = raw_stream(oai, {})
    assert all("usage" not in c for c in chunks)


def test_sdk_raw_stream_and_helper(client: openai.OpenAI, oai: Any) -> None:
    oai.script("Plan.</think>\n\nAnswer text<|im_end|>")
    stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Answer text"
    with client.chat.completions.stream(model=MODEL, messages=USER) as helper:
        for _ in helper:
            pass
        final = helper.get_final_completion()
    assert final.choices[0].message.content == "Answer text"
    assert final.choices[0].message.reasoning_content == "Plan."  # type: ignore[attr-defined]


def test_tool_call_non_stream_and_stream(client: openai.OpenAI, oai: Any, validate_schema: Any) -> None:
    oai.script(f"I should call.</think>\n\n{TOOL_CALL}<|im_end|>")
    completion = client.chat.completions.create(model=MODEL, messages=USER, tools=[WEATHER])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    validate_schema("CreateChatCompletionResponse", completion.model_dump(mode="json", exclude_unset=True))
    prompt = oai.processor.tokenizer.decode(oai.engine.submitted[-1].prompt_token_ids)
    assert '"name": "get_weather"' in prompt
    oai.engine.tokens_per_step = 3
    with client.chat.completions.stream(model=MODEL, messages=USER, tools=[WEATHER]) as helper:
        for _ in helper:
            pass
        final = helper.get_final_completion()
    (streamed,) = final.choices[0].message.tool_calls
    assert streamed.function.name == "get_weather" and json.loads(streamed.function.arguments) == {"city": "Paris", "days": 3}
    assert final.choices[0].finish_reason == "tool_calls"


def test_tool_call_stream_fragments(oai: Any) -> None:
    oai.script(f"</think>\n\n{TOOL_CALL}\n{TOOL_CALL}<|im_end|>")
    chunks, _ = raw_stream(oai, {"tools": [WEATHER]})
    fragments = [tc for c in chunks for tc in (c["choices"][0]["delta"].get("tool_calls") or [])]
    firsts = [f for f in fragments if "id" in f]
    assert [f["index"] for f in firsts] == [0, 1]
    assert all(f["type"] == "function" and f["function"]["name"] == "get_weather" for f in firsts)
    for f in fragments:
        if "id" not in f:
            assert set(f) == {"index", "function"} and set(f["function"]) == {"arguments"}
    for index in (0, 1):
        args = "".join(f["function"]["arguments"] for f in fragments if f["index"] == index)
        assert json.loads(args) == {"city": "Paris", "days": 3}


def test_history_with_tool_calls_and_results_renders(client: openai.OpenAI, oai: Any) -> None:
    oai.script("</think>\n\nIt is sunny.<|im_end|>")
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "reasoning_content": "need tool",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
    ]
    completion = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert completion.choices[0].message.content == "It is sunny."
    prompt = oai.processor.tokenizer.decode(oai.engine.submitted[-1].prompt_token_ids)
    assert prompt.startswith("<|im_start|>system\n# Tools") and "Be brief." in prompt
    assert "<parameter=city>\nParis\n</parameter>" in prompt and "<tool_response>\nsunny\n</tool_response>" in prompt


def test_logprobs_shape(client: openai.OpenAI, oai: Any) -> None:
    oai.script("thinking</think>\n\nHello world<|im_end|>")
    completion = client.chat.completions.create(model=MODEL, messages=USER, logprobs=True, top_logprobs=3)
    content = completion.choices[0].logprobs.content
    assert "".join(t.token for t in content) == "Hello world"
    for token in content:
        assert len(token.top_logprobs) == 3 and token.bytes == list(token.token.encode())
        assert token.logprob <= 0
    plain = client.chat.completions.create(model=MODEL, messages=USER)
    assert plain.choices[0].logprobs is None
    chunks, _ = raw_stream(oai, {"logprobs": True, "top_logprobs": 1})
    streamed = [t for c in chunks if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["content"]]
    assert "".join(t["token"] for t in streamed) == "Hello world"


def test_stop_strings(client: openai.OpenAI, oai: Any) -> None:
    oai.script("</think>\n\nOne, two, three<|im_end|>")
    completion = client.chat.completions.create(model=MODEL, messages=USER, stop=[", th", "zzz"])
    assert completion.choices[0].message.content == "One, two"
    assert completion.choices[0].finish_reason == "stop"


def test_length_finish_and_max_completion_tokens(client: openai.OpenAI, oai: Any) -> None:
    oai.script("</think>\n\n" + "word " * 40 + "<|im_end|>")
    completion = client.chat.completions.create(model=MODEL, messages=USER, max_completion_tokens=5,
                                                reasoning_effort="none")
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 5


def test_extensions_top_level_and_extra_body(client: openai.OpenAI, oai: Any) -> None:
    oai.script("Hello<|im_end|>")
    client.chat.completions.create(model=MODEL, messages=USER, extra_body={"enable_thinking": False})
    prompt = oai.processor.tokenizer.decode(oai.engine.submitted[-1].prompt_token_ids)
    assert prompt.endswith("<think>\n\n</think>\n\n")
    response = httpx.post(
        f"{oai.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": USER, "extra_body": {"thinking_budget": 2048}, "top_k": 5, "min_p": 0.1,
              "repetition_penalty": 1.1, "ignore_eos": True, "chat_template_kwargs": {"enable_thinking": True}},
        headers={"x-api-key": oai.secret}, timeout=30,
    )
    assert response.status_code == 200, response.text
    params = oai.engine.submitted[-1].params
    assert params.thinking_budget.max_thinking_tokens == 2048 and params.top_k == 5 and params.min_p == 0.1
    assert params.repetition_penalty == 1.1 and params.ignore_eos


def test_defaults_reach_the_engine(client: openai.OpenAI, oai: Any) -> None:
    client.chat.completions.create(model=MODEL, messages=USER, seed=7)
    params = oai.engine.submitted[-1].params
    assert (params.temperature, params.top_p, params.top_k, params.min_p) == (0.7, 0.95, 20, 0.0)
    assert params.max_tokens == 4096 and params.seed == 7 and params.repetition_penalty == 1.0
    assert params.thinking_budget.max_thinking_tokens == 4096 - 1024 - len(params.thinking_budget.wind_down_ids) - 1


def test_model_aliases(client: openai.OpenAI) -> None:
    for name in ("qwen3-5-4b", "qwen3.5-4b", "Qwen/Qwen3.5-4B"):
        assert client.chat.completions.create(model=name, messages=USER).model == MODEL


def test_in_stream_error(client: openai.OpenAI, oai: Any) -> None:
    oai.script("</think>\n\n" + "word " * 40)
    oai.engine.fail_after_steps = 3
    with pytest.raises(openai.APIError) as info:
        for _ in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
            pass
    assert "failed" in str(info.value.message).lower()
