"""Anthropic streaming body: a running generation -> `event:`-framed SSE bytes, with pings and `event: error`.

Owns the byte stream of `POST /v1/messages` with `stream: true`: message_start, a ping, the renderer's events as the
generation produces them, `ping` keep-alives while the model is silent, and on failure one `event: error` then
the end. Imports api.sse (framing), serving types and this package's renderer/errors.
Invariant: whatever the ending (done, error, client gone), `close(status)` runs exactly once (it aborts the
engine request and records usage: api.lifecycle's `Started.close`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

from qwen35.api.anthropic.errors import error_event
from qwen35.api.anthropic.protocol_response import PingEvent
from qwen35.api.anthropic.render import GenerationFailed, MessageRenderer
from qwen35.api.sse import sse_event
from qwen35.serving.errors import InternalError, ServingError
from qwen35.serving.events import ServingEvent

log = logging.getLogger(__name__)

KEEPALIVE_S = 10.0
_PING = sse_event("ping", PingEvent().to_wire())


async def with_keepalive(events: AsyncIterator[Any], interval_s: float) -> AsyncIterator[Any | None]:
    """Yield the items of `events`, and None whenever `interval_s` passes without one.

    The pending `__anext__` is never cancelled by a timeout (cancelling a generator mid-step would abort the
    generation); it is only cancelled when the consumer stops early.
    """
    iterator = events.__aiter__()
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=interval_s)
            if not done:
                yield None
                continue
            step, pending = pending, None
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            try:
                await pending
            except BaseException:  # noqa: BLE001 - the step was abandoned on purpose
                pass


def _frame(event: Any) -> bytes:
    payload = event.to_wire()
    return sse_event(payload["type"], payload)


async def message_stream(
    events: AsyncIterator[ServingEvent],
    renderer: MessageRenderer,
    close: Callable[[str], Awaitable[None]],
    request_id: str,
    keepalive_s: float | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body over one generation's events; `close(status)` settles it (abort + usage) exactly once."""
    keepalive_s = KEEPALIVE_S if keepalive_s is None else keepalive_s
    status = "cancelled"  # unless the loop below ends normally or fails: the client went away
    try:
        for event in renderer.start():
            yield _frame(event)
        yield _PING  # as the real API does right after message_start
        stream = with_keepalive(events, keepalive_s)
        try:
            async for item in stream:
                if item is None:
                    yield _PING
                    continue
                for event in renderer.feed(item):
                    yield _frame(event)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if not renderer.finished:
            raise InternalError("The generation ended without finishing")
        status = "completed"
    except GenerationFailed as exc:
        status = "failed"
        yield _frame(error_event(InternalError(exc.message), request_id))
    except ServingError as exc:
        status = "failed"
        yield _frame(error_event(exc, request_id))
    except Exception:  # noqa: BLE001 - the 200 headers are gone: report in-stream, never crash the server
        log.exception("anthropic stream %s failed", request_id)
        status = "failed"
        yield _frame(error_event(InternalError("The server had an error while processing your request."), request_id))
    finally:
        await close(status)
