"""The life of a metered generation at the HTTP edge, shared by every API family.

Owns the order of operations: prepare (template, limits) -> admit (platform) -> start (engine accepted the work,
so input errors are still HTTP errors) -> events (merged when one HTTP request runs several prompts) -> settle
(usage recorded once, whatever the ending: done, error, client gone). Also the non-streamed wait that notices a
client disconnect. Imports serving and api.metering; nothing from an API family.
Invariants: `Started.close()` runs exactly once, shielded from cancellation, and it aborts whatever still runs;
a stream's final event is rendered only after `close()` recorded the usage (`settle`), so a client that saw the end
of an answer never outlives its ledger record.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Awaitable, Sequence, TypeVar

import anyio
from fastapi import Request

from qwen35.api.metering import MeteredCall, admit
from qwen35.serving.core import Generation, ServingCore
from qwen35.serving.events import Finished, ServingEvent, Usage
from qwen35.serving.request import GenerationRequest

T = TypeVar("T")
DISCONNECT_POLL_S = 0.25


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
    _events: AsyncIterator[tuple[int, ServingEvent]] | None = None

    @property
    def usage(self) -> Usage:
        """Token counts so far, with the cost once `close()` recorded them (send after closing)."""
        return replace(sum_usage([g.usage for g in self.generations]), cost_usd=self.cost_usd)

    def events(self) -> AsyncIterator[tuple[int, ServingEvent]]:
        """(generation index, event) in arrival order across all generations (one iterator per call)."""
        if self._events is None:
            self._events = merge(self.generations)
        return self._events

    async def close(self, status: str) -> None:
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            if self._events is not None:
                await self._events.aclose()  # type: ignore[attr-defined]  # stops the pumps first
            for generation in self.generations:
                await generation.aclose()
            record = await self.call.finish(self.request_id, self.usage, status)
            if record is not None:
                self.cost_usd = str(record.cost)

    async def settle(self, event: Finished, status: str) -> Finished:
        """Record the usage (`close(status)`) before the request's last `Finished` is rendered; returns the event
        with the ledger's cost in its usage. Only for the last event of a single generation: it stops the rest."""
        await self.close(status)
        if event.usage is None or self.cost_usd is None:
            return event
        return replace(event, usage=replace(event.usage, cost_usd=self.cost_usd))


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
    request: Request, key: Any, endpoint: str, model: str, requests: Sequence[GenerationRequest], request_id: str
) -> Started:
    """Prepare every request, admit the lot, start them; raises ServingError before any response byte."""
    core: ServingCore = request.app.state.core
    prepared = [core.prepare(r) for r in requests]
    num_input = sum(len(p.prompt_token_ids) for p in prepared)
    max_output = sum((p.params.max_tokens or 0) * p.params.n for p in prepared)
    call = await admit(request.app.state.platform, key, endpoint, model, num_input, max_output)
    generations: list[Generation] = []
    try:
        for p in prepared:
            generation = core.generate(p)
            generations.append(generation)
            await generation.start()
    except BaseException:
        with anyio.CancelScope(shield=True):
            for generation in generations:
                await generation.aclose()
            await call.finish(request_id, None, "failed")
        raise
    return Started(request_id=request_id, generations=generations, call=call)


async def merge(generations: Sequence[Generation]) -> AsyncIterator[tuple[int, ServingEvent]]:
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
            index, event, error = await queue.get()
            if error is not None:
                raise error
            if event is None:
                remaining -= 1
                continue
            yield index, event
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
