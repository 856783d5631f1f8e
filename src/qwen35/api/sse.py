"""Server-sent events: framing helpers and a streaming response that always closes its body.

Owns the byte format of SSE frames (`data:`-only for Chat/Completions, `event:` + `data:` for Responses/Anthropic)
and `SSEResponse`, which guarantees the body iterator's cleanup (engine abort, usage record) runs even when the
client disconnects mid-stream. Imports Starlette/anyio only.
Invariant: one JSON document per `data:` line, compact, UTF-8; cleanup runs exactly once, shielded from
cancellation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS: Mapping[str, str] = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def sse_data(payload: Any) -> bytes:
    """`data: <json>\\n\\n` (OpenAI Chat / Completions framing)."""
    return f"data: {dumps(payload)}\n\n".encode()


def sse_event(event: str, payload: Any) -> bytes:
    """`event: <name>\\ndata: <json>\\n\\n` (Responses / Anthropic framing)."""
    return f"event: {event}\ndata: {dumps(payload)}\n\n".encode()


def sse_event_of(payload: Mapping[str, Any]) -> bytes:
    """An `event:`-framed frame named by the payload's own `type` (every Responses / Anthropic event has one)."""
    return sse_event(str(payload["type"]), payload)


class SSEResponse(StreamingResponse):
    """text/event-stream whose body iterator is always closed, under a shield, when the response ends."""

    def __init__(self, body: AsyncIterator[bytes], headers: Mapping[str, str] | None = None, status_code: int = 200):
        super().__init__(body, status_code=status_code, headers={**SSE_HEADERS, **(headers or {})},
                         media_type="text/event-stream")
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self._body, "aclose", None)
                if aclose is not None:
                    await aclose()
