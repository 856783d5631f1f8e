"""GET /v1/models (both shapes), /health, /docs, and legacy POST /v1/completions through the openai SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

MODEL = "qwen3-5-4b"


def test_health_and_docs(oai: Any) -> None:
    health = httpx.get(f"{oai.base_url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    docs = httpx.get(f"{oai.base_url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = httpx.get(f"{oai.base_url}/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"] and "/v1/completions" in spec["paths"]


def test_models_list_and_retrieve(client: openai.OpenAI, oai: Any, validate_schema: Any) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    for name in (MODEL, "qwen3.5-4b", "Qwen/Qwen3.5-4B"):
        model = client.models.retrieve(name)
        assert model.id == MODEL and model.object == "model" and model.owned_by
    raw = httpx.get(f"{oai.base_url}/v1/models", headers={"Authorization": f"Bearer {oai.secret}"}).json()
    validate_schema("ListModelsResponse", raw)
    one = httpx.get(f"{oai.base_url}/v1/models/Qwen/Qwen3.5-4B", headers={"Authorization": f"Bearer {oai.secret}"})
    validate_schema("Model", one.json())
    assert httpx.get(f"{oai.base_url}/v1/models").status_code == 401


def test_models_anthropic_shape(oai: Any) -> None:
    headers = {"x-api-key": oai.secret, "anthropic-version": "2023-06-01"}
    page = httpx.get(f"{oai.base_url}/v1/models", headers=headers).json()
    assert page["has_more"] is False and page["data"][0]["lifecycle"] == "active"
    assert page["data"][0]["created_at"].endswith("Z") and page["first_id"] == page["last_id"] == MODEL


def test_completion_text_prompt(client: openai.OpenAI, oai: Any, validate_schema: Any) -> None:
    oai.script(" there, friend<|endoftext|>")
    completion = client.completions.create(model=MODEL, prompt="Hello")
    assert completion.object == "text_completion" and completion.choices[0].text == " there, friend"
    assert completion.choices[0].finish_reason == "stop"
    submitted = oai.engine.submitted[-1]
    assert submitted.prompt_token_ids == oai.processor.tokenizer.encode("Hello")
    room = oai.engine.max_model_len - len(submitted.prompt_token_ids)
    assert submitted.params.max_tokens == min(4096, room) and submitted.params.thinking_budget is None
    usage = completion.usage
    assert usage.prompt_tokens == len(submitted.prompt_token_ids) and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    validate_schema("CreateCompletionResponse", completion.model_dump(mode="json", exclude_unset=True))


def test_completion_max_tokens_default_and_length(client: openai.OpenAI, oai: Any) -> None:
    # the product's one default (4096, as on every API) lets the script run to its end; a limit cuts it
    oai.script("a b c d e f g h i j k l m n o p q r s t u v w x y z")
    completion = client.completions.create(model=MODEL, prompt="x")
    assert completion.choices[0].finish_reason == "stop" and completion.usage.completion_tokens > 16
    completion = client.completions.create(model=MODEL, prompt="x", max_tokens=16)
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 16


@pytest.mark.parametrize("prompt", ["one", ["one", "two"], [16, 17, 18], [[16, 17], [18]]])
def test_prompt_forms_and_n(client: openai.OpenAI, oai: Any, prompt: Any) -> None:
    oai.script(" A<|endoftext|>", " B<|endoftext|>")
    completion = client.completions.create(model=MODEL, prompt=prompt, n=2, max_tokens=5)
    num_prompts = 2 if isinstance(prompt, list) and isinstance(prompt[0], (str, list)) else 1
    assert [c.index for c in completion.choices] == list(range(2 * num_prompts))
    assert [c.text for c in completion.choices] == [" A", " B"] * num_prompts


def test_completion_logprobs_and_echo(oai: Any) -> None:
    # The first echoed token has no logprob: null, as the real API sends. openai's strict mode rejects that
    # (its Logprobs type has no Optional items, the same typing bug as the stream's null finish_reason).
    client = oai.client(strict=False)
    oai.script(" world<|endoftext|>")
    completion = client.completions.create(model=MODEL, prompt="Hello big", logprobs=2, echo=True, max_tokens=4)
    choice = completion.choices[0]
    assert choice.text == "Hello big world"
    lp = choice.logprobs
    prompt_ids = oai.processor.tokenizer.encode("Hello big")
    assert len(lp.tokens) == len(prompt_ids) + len(oai.processor.tokenizer.encode(" world"))
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(isinstance(v, float) for v in lp.token_logprobs[1:])
    assert all(2 <= len(t) <= 3 for t in lp.top_logprobs[1:])
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    plain = client.completions.create(model=MODEL, prompt="Hello", logprobs=0)
    assert plain.choices[0].logprobs.tokens == [" world"] and len(plain.choices[0].logprobs.top_logprobs[0]) == 1


def test_suffix_builds_a_fim_prompt(client: openai.OpenAI, oai: Any) -> None:
    oai.script("    return a + b<|endoftext|>")
    completion = client.completions.create(model=MODEL, prompt="def add(a, b):\n", suffix="\nprint(add(1, 2))")
    assert completion.choices[0].text == "    return a + b"
    prompt = oai.processor.tokenizer.decode(oai.engine.submitted[-1].prompt_token_ids)
    assert prompt == "<|fim_prefix|>def add(a, b):\n<|fim_suffix|>\nprint(add(1, 2))<|fim_middle|>"


def test_completion_stream(oai: Any) -> None:
    oai.script(" streamed text<|endoftext|>")
    response = httpx.post(
        f"{oai.base_url}/v1/completions",
        json={"model": MODEL, "prompt": "Go", "stream": True, "stream_options": {"include_usage": True}, "echo": True},
        headers={"Authorization": f"Bearer {oai.secret}"}, timeout=30,
    )
    frames = [f[len("data: "):] for f in response.text.split("\n\n") if f and not f.startswith(":")]  # skip the opening keep-alive comment
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    *body, usage = chunks
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    assert "".join(c["choices"][0]["text"] for c in body) == "Go streamed text"
    assert [c["choices"][0]["finish_reason"] for c in body][-1] == "stop"


def test_completion_stream_with_the_default_sdk_client(oai: Any) -> None:
    oai.script(" ok<|endoftext|>")
    client = oai.client(strict=False)  # strict mode rejects the real API's null finish_reason (SDK typing bug)
    text = "".join(c.choices[0].text for c in client.completions.create(model=MODEL, prompt="x", stream=True) if c.choices)
    assert text == " ok"


@pytest.mark.parametrize(
    "param,value",
    [("prompt", ""), ("prompt", []), ("prompt", [[]]), ("prompt", [300000]), ("logprobs", 21), ("logprobs", True),
     ("max_tokens", 0), ("echo", "yes"), ("best_of", 3), ("suffix", 5), ("n", 0), ("temperature", 9)],
)
def test_completion_validation(oai: Any, param: str, value: Any) -> None:
    response = httpx.post(
        f"{oai.base_url}/v1/completions", json={"model": MODEL, "prompt": "x", param: value},
        headers={"Authorization": f"Bearer {oai.secret}"}, timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].split("[")[0] == param
