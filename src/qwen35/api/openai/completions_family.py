"""The legacy Completions family (`POST /v1/completions`): its converter and renderer for the one edge.

Owns `CompletionsFamily` (one GenerationRequest per prompt, metered as one request) and `CompletionsRenderer`
(echo of the prompt with prompt logprobs, `data:` SSE chunks or the `text_completion` body). Imports api (edge,
errors, lifecycle, sse) and the sibling completions modules. Invariant: every prompt of the request is admitted,
metered and settled as one request (one usage record).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio

from qwen35.api.edge import BaseRenderer, Context, Plan
from qwen35.api.errors import openai_error_body
from qwen35.api.lifecycle import Started
from qwen35.api.openai.completions_render import CompletionRenderer, Echo, make_echo
from qwen35.api.openai.completions_request import CompletionRequest, to_generation_requests
from qwen35.api.openai.family import OpenAIFamily
from qwen35.api.sse import DONE, KEEPALIVE, sse_data
from qwen35.processor.tokenizer import Tokenizer
from qwen35.serving.core import Generation
from qwen35.serving.errors import ServingError
from qwen35.serving.events import ServingEvent, Usage


def _echo(body: CompletionRequest, prompt: str | list[int], generation: Generation, tokenizer: Tokenizer) -> Echo:
    ids = list(generation.prompt_token_ids)
    text = prompt if isinstance(prompt, str) else tokenizer.decode(ids)
    tokens = [bytes(tokenizer.token_bytes(t)).decode("utf-8", errors="replace") for t in ids]
    return make_echo(text, tokens, generation.prompt_logprobs)


class CompletionsRenderer(BaseRenderer):

    def __init__(self, body: CompletionRequest, started: Started, ids: tuple[str, int, str, str], tokenizer: Tokenizer):
        echoes = [
            _echo(body, prompt, generation, tokenizer) if body.echo else None
            for prompt, generation in zip(body.prompt_list(), started.generations)
        ]
        self._include_usage = body.include_usage()
        self._renderer = CompletionRenderer(
            *ids, body.sampling().n, echoes, body.logprobs is not None, self._include_usage
        )
        self._opening = self._renderer.start()  # the echoed prompts count in both modes

    def open(self) -> list[bytes]:
        # an SSE comment first: bytes on the wire at once, before the prefill (proxy idle timeouts)
        return [KEEPALIVE, *(sse_data(chunk) for chunk in self._opening)]

    def event(self, index: int, event: ServingEvent) -> list[bytes]:
        return [sse_data(chunk) for chunk in self._renderer.on_event(index, event)]

    def close(self, usage: Usage) -> list[bytes]:
        frames = [sse_data(self._renderer.usage_chunk(usage))] if self._include_usage else []
        return [*frames, DONE]

    def fail(self, error: ServingError) -> list[bytes]:
        return [sse_data(openai_error_body(error)), DONE]

    def body(self, usage: Usage) -> dict[str, Any]:
        return self._renderer.body(usage)


class CompletionsFamily(OpenAIFamily):
    path = "/v1/completions"
    endpoint = "completions"
    input_param = "prompt"
    body_model = CompletionRequest
    spec_fields = frozenset({
        "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "model", "n",
        "presence_penalty", "prompt", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p",
        "user",
    })

    def new_id(self) -> str:
        return f"cmpl-{uuid.uuid4().hex}"

    async def convert(self, ctx: Context, body: CompletionRequest) -> Plan:
        tokenizer = ctx.core.tokenizer
        ids = (ctx.request_id, int(time.time()), ctx.model, ctx.settings.system_fingerprint)

        def renderer(started: Started) -> CompletionsRenderer:
            return CompletionsRenderer(body, started, ids, tokenizer)

        # tokenizing a large prompt takes seconds: off the event loop
        requests = await anyio.to_thread.run_sync(to_generation_requests, body, ctx.request_id, tokenizer)
        return Plan(requests, body.stream, renderer)
