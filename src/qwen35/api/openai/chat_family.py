"""The Chat Completions family (`POST /v1/chat/completions`): its converter and renderer for the one edge.

Owns `ChatFamily` (conversion through chat_convert) and
`ChatRenderer`, which drives chat_render's accumulator (JSON body) or chunker (`data:` SSE frames, an in-stream
`{"error": ...}` chunk then `[DONE]` on failure). Imports api (edge, errors, lifecycle, sse) and the sibling chat
modules. Invariant: the same events give the same message streamed or not; the usage chunk (include_usage) and
`[DONE]` come only after the ledger recorded the request.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from qwen35.api.edge import BaseRenderer, Context, Plan
from qwen35.api.errors import openai_error_body
from qwen35.api.lifecycle import Started
from qwen35.api.openai.chat_convert import to_generation_request
from qwen35.api.openai.chat_render import ChatAccumulator, ChatChunker
from qwen35.api.openai.chat_request import ChatCompletionRequest
from qwen35.api.openai.family import HOSTED_ONLY, OpenAIFamily
from qwen35.api.sse import DONE, KEEPALIVE, sse_data
from qwen35.serving.errors import ServingError
from qwen35.serving.events import ServingEvent, Usage


class ChatRenderer(BaseRenderer):
    """One chat completion: chunks while streaming, the `chat.completion` body otherwise."""

    def __init__(self, body: ChatCompletionRequest, completion_id: str, model: str, fingerprint: str) -> None:
        self._n = body.sampling().n
        self._include_usage = body.include_usage()
        self._ids = (completion_id, int(time.time()), model, fingerprint)
        searching = body.web_search_options is not None
        self._chunker = ChatChunker(*self._ids, bool(body.logprobs), self._include_usage, searching)
        self._accumulator = ChatAccumulator(self._n, bool(body.logprobs), searching)

    def open(self) -> list[bytes]:
        # an SSE comment first: bytes on the wire at once, whatever the first chunk waits for (proxy idle timeouts)
        return [KEEPALIVE, *(sse_data(chunk) for chunk in self._chunker.opening(self._n))]

    def event(self, index: int, event: ServingEvent) -> list[bytes]:
        self._accumulator.add(event)
        return [sse_data(chunk) for chunk in self._chunker.on_event(event)]

    def close(self, usage: Usage) -> list[bytes]:
        frames = [sse_data(self._chunker.usage_chunk(usage))] if self._include_usage else []
        return [*frames, DONE]

    def fail(self, error: ServingError) -> list[bytes]:
        return [sse_data(openai_error_body(error)), DONE]

    def body(self, usage: Usage) -> dict[str, Any]:
        completion_id, created, model, fingerprint = self._ids
        return self._accumulator.body(completion_id, created, model, fingerprint, usage)


class ChatFamily(OpenAIFamily):
    path = "/v1/chat/completions"
    endpoint = "chat.completions"
    input_param = "messages"
    body_model = ChatCompletionRequest
    spec_fields = frozenset({
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "max_completion_tokens",
        "max_tokens", "messages", "metadata", "modalities", "model", "moderation", "n", "parallel_tool_calls",
        "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
        "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
        "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
        "web_search_options",
    })
    no_effect_fields = HOSTED_ONLY

    def new_id(self) -> str:
        return f"chatcmpl-{uuid.uuid4().hex}"

    async def convert(self, ctx: Context, body: ChatCompletionRequest) -> Plan:
        fingerprint = ctx.settings.system_fingerprint

        def renderer(started: Started) -> ChatRenderer:
            return ChatRenderer(body, ctx.request_id, ctx.model, fingerprint)

        return Plan([to_generation_request(body, ctx.request_id)], body.stream, renderer)
