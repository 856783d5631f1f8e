"""Property-based fuzzing of every endpoint: 0 server errors, the server still answering.

1. schemathesis generates valid and invalid requests from our own /openapi.json (the families' body models are in
   it) for every operation, sent over HTTP to the app on 127.0.0.1 with a valid key (scripted engine: these are
   protocol-shape tests).
2. hypothesis builds hostile chat, messages and responses bodies: arbitrary unicode (escaped lone surrogates
   included), control-token strings, random JSON tool schemas and response formats, odd numbers.
Every answer must be < 500 and, when an error, the family's JSON envelope; `/health` answers afterwards.
The case counts are printed (`-s`) for the closing note.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from scripted_app import AppHarness, running_app

SCHEMA_EXAMPLES = 25  # per operation and mode
BODY_EXAMPLES = 150
COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    with running_app(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


def _headers(harness: AppHarness) -> dict[str, str]:
    return {"authorization": f"Bearer {harness.secret}", "x-api-key": harness.secret,
            "anthropic-version": "2023-06-01"}


def _check(response: Any, where: str) -> None:
    status = response.status_code
    assert status < 500 or status in (503, 529) and response.headers.get("retry-after"), (where, status,
                                                                                          response.text[:400])
    if status >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        assert "error" in body, (where, body)


def test_schemathesis_every_operation(harness: AppHarness) -> None:
    spec = httpx.get(f"{harness.base_url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    headers = _headers(harness)
    cases = 0
    with httpx.Client(base_url=harness.base_url, headers=headers, timeout=30) as client:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.method.upper() == "DELETE" and "keys" in operation.path:
                continue  # revoking our own key would end the run (tested elsewhere)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode)

                @settings(max_examples=SCHEMA_EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def run(case: Any) -> None:
                    nonlocal cases
                    cases += 1
                    kwargs = case.as_transport_kwargs(base_url=harness.base_url)
                    sent_headers = {k: v for k, v in (kwargs.get("headers") or {}).items()
                                    if k.lower() not in ("authorization", "x-api-key")}
                    response = client.request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                              headers={**headers, **sent_headers}, content=_content(kwargs))
                    _check(response, f"{case.method} {case.path}")

                try:
                    run()
                except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                    assert mode == GenerationMode.NEGATIVE, operation.path
    COUNTS["schemathesis"] = cases
    print(f"\nschemathesis: {cases} cases over {len(spec['paths'])} paths")
    assert httpx.get(f"{harness.base_url}/health", timeout=5).status_code == 200


def _content(kwargs: dict[str, Any]) -> bytes | None:
    if "json" in kwargs and kwargs["json"] is not None:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data") or kwargs.get("content")
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return data if isinstance(data, bytes) else None


# ---- hand-shaped hostile bodies --------------------------------------------------------------------------------

CONTROL = st.sampled_from(["<|im_end|>", "<|im_start|>system\n", "<think>", "</think>", "<tool_call>",
                           "<|image_pad|>", "<|vision_start|>", "\ue000", "\x00", "\ud800", "\udfff"])
TEXT = st.lists(st.one_of(st.text(max_size=40), CONTROL), max_size=6).map("".join)
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False), TEXT)
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)
SCHEMA = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean", "null", "bogus"])}),
    lambda inner: st.one_of(
        st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(TEXT, inner, max_size=3)},
                              optional={"required": st.lists(TEXT, max_size=3),
                                        "additionalProperties": st.booleans()}),
        st.fixed_dictionaries({"type": st.just("array"), "items": inner},
                              optional={"minItems": st.integers(-3, 5), "maxItems": st.integers(-1, 5)}),
        st.fixed_dictionaries({"anyOf": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"enum": st.lists(JSON_LEAF, max_size=3)}),
    ), max_leaves=8)
NUMBER = st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3),
                   st.none(), st.booleans())
TOOL = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": st.one_of(st.just("f"), TEXT), "parameters": st.one_of(SCHEMA, JSON)},
    optional={"description": TEXT, "strict": st.booleans()})})
CHAT = st.fixed_dictionaries(
    {"model": st.just("qwen3-5-4b"),
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool",
                                                                          "developer", "bogus"]),
                                                 "content": st.one_of(TEXT, JSON)}), min_size=0, max_size=4)},
    optional={"max_tokens": NUMBER, "temperature": NUMBER, "top_p": NUMBER, "top_k": NUMBER, "n": NUMBER,
              "stop": st.one_of(TEXT, st.lists(TEXT, max_size=6)), "seed": NUMBER, "stream": st.booleans(),
              "tools": st.lists(TOOL, max_size=3), "tool_choice": st.one_of(st.sampled_from(["auto", "none",
                                                                                              "required"]), JSON),
              "response_format": st.one_of(
                  st.fixed_dictionaries({"type": st.just("json_schema"), "json_schema": st.fixed_dictionaries(
                      {"name": st.just("s"), "schema": st.one_of(SCHEMA, JSON)})}),
                  st.fixed_dictionaries({"type": st.sampled_from(["json_object", "text", "bogus"])})),
              "logit_bias": st.dictionaries(TEXT, NUMBER, max_size=3), "logprobs": st.booleans(),
              "top_logprobs": NUMBER, "reasoning_effort": st.one_of(TEXT, st.sampled_from(["low", "none", "max"]))})


def _to_messages(chat: dict[str, Any]) -> dict[str, Any]:
    """The same content as an Anthropic body."""
    out: dict[str, Any] = {"model": chat["model"], "max_tokens": chat.get("max_tokens", 16),
                           "messages": [{"role": m["role"], "content": m["content"]} for m in chat["messages"]]}
    for name in ("temperature", "top_p", "top_k", "stream"):
        if name in chat:
            out[name] = chat[name]
    if "stop" in chat:
        out["stop_sequences"] = chat["stop"]
    if "tools" in chat:
        out["tools"] = [{"name": t["function"]["name"], "input_schema": t["function"]["parameters"]}
                        for t in chat["tools"]]
    return out


def _to_responses(chat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"model": chat["model"], "input": chat["messages"] or "hi"}
    if "max_tokens" in chat:
        out["max_output_tokens"] = chat["max_tokens"]
    if "tools" in chat:
        out["tools"] = [{"type": "function", "name": t["function"]["name"], "parameters": t["function"]["parameters"]}
                        for t in chat["tools"]]
    if "stream" in chat:
        out["stream"] = chat["stream"]
    return out


def test_hypothesis_hostile_bodies(harness: AppHarness) -> None:
    cases = 0
    with httpx.Client(base_url=harness.base_url, headers=_headers(harness), timeout=30) as client:

        @settings(max_examples=BODY_EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(chat=CHAT)
        def run(chat: dict[str, Any]) -> None:
            nonlocal cases
            for path, body in (("/v1/chat/completions", chat), ("/v1/messages", _to_messages(chat)),
                               ("/v1/responses", _to_responses(chat)),
                               ("/v1/messages/count_tokens", {k: v for k, v in _to_messages(chat).items()
                                                              if k not in ("max_tokens", "stream", "temperature",
                                                                           "top_p", "top_k", "stop_sequences")})):
                cases += 1
                content = json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \\ud800 escapes
                response = client.post(path, content=content, headers={"content-type": "application/json"})
                _check(response, path)

        run()
    COUNTS["hypothesis"] = cases
    print(f"\nhypothesis: {cases} hostile bodies over 4 endpoints")
    health = httpx.get(f"{harness.base_url}/health", timeout=5)
    assert health.status_code == 200 and health.elapsed.total_seconds() < 1
