"""The life of a metered generation at the HTTP edge, written once for every API family.

Owns the order of operations: start (prepare, admit, engine accepted the work, so input errors are still HTTP
errors) -> events (merged when one HTTP request runs several prompts) -> settle (usage recorded once, whatever the
ending: done, error, client gone) -> the final event; the stream loop (with keep-alives) and the non-streamed wait
that notices a client disconnect, both over a family's `Renderer`. Imports serving and api.metering; nothing from
an API family.
Invariants: `Started.close()` runs exactly once, shielded from cancellation, and it aborts whatever still runs; the
request's last event is rendered only after `close()` recorded the usage, so a client that saw the end of an answer
never outlives its ledger record, and the final usage carries the ledger's cost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import anyio
from fastapi import Request

from qwen35.api.metering import MeteredCall, admit
from qwen35.serving.core import Generation, ServingCore
from qwen35.serving.errors import InternalError, RequestTimeoutError, ServingError
from qwen35.serving.events import Finished, ServingEvent, Usage
from qwen35.serving.request import GenerationRequest

log = logging.getLogger(__name__)
T = TypeVar("T")
DISCONNECT_POLL_S = 0.25
KEEPALIVE_S = 5.0  # the default of ServerSettings.keepalive_s


class ClientDisconnected(Exception):
    """The client went away before a non-streamed answer was ready."""


@dataclass
class Started:
    """Generations the engine accepted, plus their metering; `close(status)` settles both."""

    request_id: str
    generations: list[Generation]
    call: MeteredCall
    closed: bool = False
    cost_usd: str | None = None  # set by close(): the ledger's exact cost of this request
    endpoint: str = ""
    metrics: Any = None  # api.metrics.Metrics, fed once the ledger has the request
    drain: Any = None  # api.drain.Drain: counts the request in flight until close()
    started_at: float = field(default_factory=time.monotonic)
    first_at: float | None = None  # the first serving event (time to first token)
    _events: AsyncGenerator[tuple[int, ServingEvent], None] | None = None

    @property
    def usage(self) -> Usage:
        """Token counts so far, with the cost once `close()` recorded them (send after closing)."""
        return replace(sum_usage([g.usage for g in self.generations]), cost_usd=self.cost_usd)

    @property
    def num_choices(self) -> int:
        """Choices of all generations: that many `Finished` events end the request."""
        return sum(g.prepared.params.n for g in self.generations)

    def events(self) -> AsyncIterator[tuple[int, ServingEvent]]:
        """(generation index, event) in arrival order across all generations (one iterator per call)."""
        if self._events is None:
            self._events = self._stamped(merge(self.generations))
        return self._events

    async def _stamped(
        self, events: AsyncGenerator[tuple[int, ServingEvent], None]
    ) -> AsyncGenerator[tuple[int, ServingEvent], None]:
        try:
            async for item in events:
                if self.first_at is None:
                    self.first_at = time.monotonic()
                yield item
        finally:
            await events.aclose()

    async def close(self, status: str) -> None:
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            if self._events is not None:
                await self._events.aclose()  # stops the pumps first
            for generation in self.generations:
                await generation.aclose()
            try:
                record = await self.call.finish(self.request_id, self.usage, status)
                if record is not None:
                    self.cost_usd = str(record.cost)
            finally:  # whatever the store did, the request is no longer in flight
                if self.drain is not None:
                    self.drain.leave()
                if self.metrics is not None:
                    ttft = None if self.first_at is None else self.first_at - self.started_at
                    self.metrics.observe_generation(self.endpoint, status, self.usage, ttft,
                                                    time.monotonic() - self.started_at)


def sum_usage(usages: Sequence[Usage]) -> Usage:
    return Usage(
        input_tokens=sum(u.input_tokens for u in usages),
        cached_input_tokens=sum(u.cached_input_tokens for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        reasoning_tokens=sum(u.reasoning_tokens for u in usages),
        cache_write_tokens=sum(u.cache_write_tokens for u in usages),
        web_search_calls=sum(u.web_search_calls for u in usages),
    )


async def start(
    request: Request, key: Any, endpoint: str, model: str, requests: Sequence[GenerationRequest], request_id: str,
    stream: bool = False,
) -> Started:
    """Prepare every request, admit the lot, start them; raises ServingError before any response byte. A stream
    returns once the engine accepted the work (its headers and first event go out at once, before the prefill or a
    queue wait); a non-streamed request once the first output came."""
    core: ServingCore = request.app.state.core
    # template rendering, tokenizing and grammar compiling can take seconds for a large body: off the event loop
    prepared = await anyio.to_thread.run_sync(lambda: [core.prepare(r) for r in requests])
    tenant = getattr(key, "key_id", None)  # the engine shares its batch fairly between keys
    prepared = [replace(p, params=replace(p.params, tenant=tenant)) for p in prepared]
    num_input = sum(len(p.prompt_token_ids) for p in prepared)
    max_output = sum((p.params.max_tokens or 0) * p.params.n for p in prepared)
    call = await admit(request.app.state.platform, key, endpoint, model, num_input, max_output)
    generations: list[Generation] = []
    try:
        for p in prepared:
            generation = core.generate(p, search_gate=call.admit_search)
            generations.append(generation)
            await generation.start(wait_first=not stream)
    except BaseException:
        with anyio.CancelScope(shield=True):
            for generation in generations:
                await generation.aclose()
            await call.finish(request_id, None, "failed")
        raise
    drain = getattr(request.app.state, "drain", None)
    if drain is not None:
        drain.enter()
    return Started(request_id=request_id, generations=generations, call=call, endpoint=endpoint,
                   metrics=getattr(request.app.state, "metrics", None), drain=drain)


async def merge(generations: Sequence[Generation]) -> AsyncGenerator[tuple[int, ServingEvent], None]:
    if len(generations) == 1:
        async for event in generations[0]:
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, ServingEvent | None, BaseException | None]] = asyncio.Queue()

    async def pump(index: int, generation: Generation) -> None:
        try:
            async for event in generation:
                await queue.put((index, event, None))
            await queue.put((index, None, None))
        except Exception as exc:  # handed to the consumer, which raises it in its own task
            await queue.put((index, None, exc))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item, error = await queue.get()
            if error is not None:
                raise error
            if item is None:
                remaining -= 1
                continue
            yield index, item
    finally:
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and raising ClientDisconnected) if the client goes away first."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientDisconnected()
    finally:
        if not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(task, return_exceptions=True)


async def with_keepalive(events: AsyncIterator[T], interval_s: float) -> AsyncGenerator[T | None, None]:
    """Yield the items of `events`, and None whenever `interval_s` passes without one.

    The pending `__anext__` is never cancelled by a timeout (cancelling a generator mid-step would abort the
    generation); it is only cancelled when the consumer stops early.
    """
    iterator = events.__aiter__()
    pending: asyncio.Future[T] | None = None
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


# ---- one request, rendered by a family -------------------------------------------------------------------------


class Renderer(Protocol):
    """A family's rendering of one started request: SSE frames while streaming, a JSON body when not.

    The lifecycle calls `open` once, `event` for every serving event (the last `Finished` arrives after the ledger
    recorded the usage, with the summed usage and its cost), then either `close` (success) or `fail` (an error once
    the stream began), and `settled` exactly once after the ledger holds the request and before the end is sent.
    """

    @property
    def keepalive(self) -> bytes | None:
        """Sent when the model is silent for KEEPALIVE_S (an SSE comment or a ping event), None for nothing."""
        ...

    def open(self) -> list[bytes]: ...

    def event(self, index: int, event: ServingEvent) -> list[bytes]: ...

    def close(self, usage: Usage) -> list[bytes]: ...

    def fail(self, error: ServingError) -> list[bytes]: ...

    def body(self, usage: Usage) -> dict[str, Any]: ...

    async def settled(self, status: str) -> None: ...


def ledger_status(event: Finished) -> str:
    return "incomplete" if event.reason == "length" else "completed"


class _Run:
    """Drives one started request through a renderer; `settle` records usage, then the family's hook, once."""

    def __init__(self, started: Started, renderer: Renderer) -> None:
        self.started = started
        self.renderer = renderer
        self.num_finished = 0
        self.done = False
        self._settled = False

    async def settle(self, status: str) -> None:
        if self._settled:
            return
        self._settled = True
        with anyio.CancelScope(shield=True):
            await self.started.close(status)
            try:
                await self.renderer.settled(status)
            except Exception:  # noqa: BLE001 - the ledger has it; a failed hook must not turn the answer into an error
                log.exception("post-settle hook of %s failed", self.started.request_id)

    async def feed(self, index: int, event: ServingEvent) -> list[bytes]:
        """Frames for one event; the request's last `Finished` settles first and also returns the closing frames."""
        self.started.call.check_key()  # a key revoked while the request runs ends it at this engine step
        if not isinstance(event, Finished):
            return self.renderer.event(index, event)
        if event.reason == "error":
            raise InternalError(event.error or "The generation failed.")
        self.num_finished += 1
        if self.num_finished < self.started.num_choices:
            return self.renderer.event(index, event)
        status = ledger_status(event)
        await self.started.close(status)  # the ledger first: it prices the request
        self.started.call.check_recorded()  # fail closed: no end of an answer without its ledger record
        usage = self.started.usage
        frames = self.renderer.event(index, replace(event, usage=usage))
        frames.extend(self.renderer.close(usage))
        self.done = True
        await self.settle(status)
        return frames

    async def drain(self) -> None:
        async for index, event in self.started.events():
            await self.feed(index, event)
            if self.done:
                return
        raise InternalError("The generation ended without finishing.")


async def stream_body(
    started: Started, renderer: Renderer, keepalive_s: float | None = None, max_request_s: float | None = None
) -> AsyncIterator[bytes]:
    """The SSE body: whatever the ending (done, error, client gone) the request is settled exactly once, before
    the last frame; after the first byte every failure is the family's in-stream error."""
    keepalive_s = KEEPALIVE_S if keepalive_s is None else keepalive_s
    run = _Run(started, renderer)
    status = "cancelled"  # unless the loop ends or fails: the client went away
    try:
        for frame in renderer.open():
            yield frame
        stream = with_keepalive(started.events(), keepalive_s)
        final: list[bytes] = []
        try:
            async for item in stream:
                _check_deadline(started, max_request_s)
                if item is None:
                    if renderer.keepalive is not None:
                        yield renderer.keepalive
                    continue
                frames = await run.feed(*item)
                if run.done:
                    status, final = "completed", frames
                    break
                for frame in frames:
                    yield frame
            else:
                raise InternalError("The generation ended without finishing.")
        except ServingError as exc:
            _count_error(started, exc)
            status, final = "failed", renderer.fail(exc)
        except Exception:  # noqa: BLE001 - the 200 is sent: report in-stream, never drop the connection silently
            log.exception("stream %s failed", started.request_id)
            error = InternalError("The server had an error while processing your request.")
            _count_error(started, error)
            status, final = "failed", renderer.fail(error)
        finally:
            await stream.aclose()
        await run.settle(status)  # partial work is in the ledger before the client hears of a failure
        for frame in final:
            yield frame
    finally:
        await run.settle(status)


def _timeout(limit: float | None) -> RequestTimeoutError:
    return RequestTimeoutError(f"The request ran past the server's time limit of {limit:g} s; what was generated "
                               "until then is billed.", code="request_timeout")


def _check_deadline(started: Started, limit: float | None) -> None:
    """Raise once a stream ran past the limit (checked on every event and keep-alive, so within keepalive_s)."""
    if limit is not None and time.monotonic() - started.started_at > limit:
        raise _timeout(limit)


def _count_error(started: Started, exc: ServingError) -> None:
    """An in-stream failure (the 200 went out, so the HTTP counter cannot see it)."""
    if started.metrics is not None:
        started.metrics.errors.labels(f"stream_{exc.kind}").inc()


async def collect(
    request: Request, started: Started, renderer: Renderer, max_request_s: float | None = None
) -> dict[str, Any]:
    """The non-streamed answer: raises ClientDisconnected or ServingError; settled exactly once either way."""
    run = _Run(started, renderer)
    status = "cancelled"
    try:
        try:
            with anyio.fail_after(max_request_s):
                await until_disconnect(request, run.drain())
        except TimeoutError as exc:
            raise _timeout(max_request_s) from exc
        status = "completed"
    except ServingError:
        status = "failed"
        raise
    except ClientDisconnected:  # the client is gone: "cancelled", billed for what was made
        raise
    except Exception as exc:
        status = "failed"
        log.exception("request %s failed", started.request_id)
        raise InternalError("The server had an error while processing your request.") from exc
    finally:
        await run.settle(status)
    return renderer.body(started.usage)
