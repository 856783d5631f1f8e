"""Anthropic streaming body: a running generation -> `event:`-framed SSE bytes, with pings and `event: error`.

Owns the byte stream of `POST /v1/messages` with `stream: true`: message_start, a ping, the renderer's events as the
generation produces them, `ping` keep-alives while the model is silent, and on failure one `event: error` then
the end. Imports api.sse (framing), api.lifecycle (settling), serving types and this package's renderer/errors.
Invariants: whatever the ending (done, error, client gone), `Started.close(status)` runs exactly once (it aborts
the engine request and records usage); it runs before the last event is rendered (`message_delta` /
`message_stop`, or `event: error`), so the final usage carries the ledger's `cost` and a client that saw the end
never outlives the record.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

from qwen35.api.anthropic.errors import error_event
from qwen35.api.anthropic.protocol_response import PingEvent
from qwen35.api.anthropic.render import GenerationFailed, MessageRenderer
from qwen35.api.lifecycle import Started
from qwen35.api.sse import sse_event
from qwen35.serving.errors import InternalError, ServingError
from qwen35.serving.events import Finished, ServingEvent

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


async def _events(started: Started) -> AsyncIterator[ServingEvent]:
    async for _, event in started.events():
        yield event


async def message_stream(
    started: Started, renderer: MessageRenderer, request_id: str, keepalive_s: float | None = None
) -> AsyncIterator[bytes]:
    """The SSE body over one started generation; `started.close(status)` settles it (abort + usage) once."""
    keepalive_s = KEEPALIVE_S if keepalive_s is None else keepalive_s
    status = "cancelled"  # unless the loop below ends normally or fails: the client went away
    try:
        for event in renderer.start():
            yield _frame(event)
        yield _PING  # as the real API does right after message_start
        stream = with_keepalive(_events(started), keepalive_s)
        try:
            async for item in stream:
                if item is None:
                    yield _PING
                    continue
                if isinstance(item, Finished) and item.reason != "error" and not renderer.finished:
                    # the ledger first (it also prices the request), then message_delta with that cost
                    item = await started.settle(item, "completed")
                for event in renderer.feed(item):
                    yield _frame(event)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if not renderer.finished:
            raise InternalError("The generation ended without finishing")
        status = "completed"
    except GenerationFailed as exc:
        status = "failed"
        await started.close(status)  # partial work is in the ledger before the client hears of the failure
        yield _frame(error_event(InternalError(exc.message), request_id))
    except ServingError as exc:
        status = "failed"
        await started.close(status)
        yield _frame(error_event(exc, request_id))
    except Exception:  # noqa: BLE001 - the 200 headers are gone: report in-stream, never crash the server
        log.exception("anthropic stream %s failed", request_id)
        status = "failed"
        await started.close(status)
        yield _frame(error_event(InternalError("The server had an error while processing your request."), request_id))
    finally:
        await started.close(status)
