"""The front's RemoteEngine over a scripted deployment handle (protocol shape only; the real replicas run in
test_ray_serve.py): retry when a replica dies before any output, a clear engine error after, typed refusals,
back-pressure as overload, and a cancelled Ray stream when the consumer leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError

from qwen35.cluster.calls import ControlCall, EngineCall, Hello, RemoteError
from qwen35.cluster.remote_engine import RemoteEngine
from qwen35.engine.request import (
    ContextLengthError,
    EngineDeadError,
    EngineOutput,
    EngineOverloadedError,
    SamplingParams,
    SequenceDelta,
)

DESCRIPTION = {"vocab_size": 100, "max_model_len": 64, "supports_media": False, "model_dir": None}


def _output(token: int, finished: bool = False) -> EngineOutput:
    return EngineOutput("r", [SequenceDelta(0, [token], None, token, 0)], num_prompt_tokens=3, finished=finished)


class FakeStream:
    """One scripted Ray stream: items, then maybe an exception."""

    def __init__(self, items: list[Any], fail: BaseException | None = None) -> None:
        self.items, self.fail, self.cancelled = items, fail, False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._run()

    async def _run(self) -> AsyncIterator[Any]:
        for item in self.items:
            await asyncio.sleep(0)
            yield item
        if self.fail is not None:
            raise self.fail

    def cancel(self) -> None:
        self.cancelled = True


class FakeHandle:
    def __init__(self, streams: list[FakeStream]) -> None:
        self.streams, self.calls, self.controls = streams, [], []
        handle = self

        class _Generate:
            def remote(self, call: EngineCall) -> FakeStream:
                handle.calls.append(call)
                return handle.streams.pop(0)

        class _Finish:
            def remote(self, call: ControlCall) -> Any:
                handle.controls.append(call)
                return asyncio.sleep(0)

        self.generate, self.finish_sample = _Generate(), _Finish()

    def options(self, **_: Any) -> FakeHandle:
        return self


async def _collect(engine: RemoteEngine) -> list[EngineOutput]:
    return [o async for o in engine.generate("r", [1, 2, 3], SamplingParams(max_tokens=4))]


def test_a_replica_lost_before_output_is_retried_elsewhere() -> None:
    handle = FakeHandle([FakeStream([Hello("a")], ActorDiedError()),
                         FakeStream([Hello("b"), [_output(5)], [_output(6, finished=True)]])])
    engine = RemoteEngine(handle, DESCRIPTION)
    outputs = asyncio.run(_collect(engine))
    assert [o.sequences[0].new_token_ids for o in outputs] == [[5], [6]]
    assert handle.calls[1].exclude == ("a",) and engine.retries == 1 and engine.served == {"a": 1, "b": 1}
    assert engine.placements == {}


def test_a_replica_lost_after_output_ends_the_generation_with_an_engine_error() -> None:
    handle = FakeHandle([FakeStream([Hello("a"), [_output(5)]], ActorDiedError())])
    with pytest.raises(EngineDeadError, match="replica a"):
        asyncio.run(_collect(RemoteEngine(handle, DESCRIPTION)))
    assert len(handle.calls) == 1  # never run twice


def test_a_stream_that_ends_before_the_final_output_is_a_lost_replica_not_a_normal_end() -> None:
    """Ray can end a stopped or killed replica's streams cleanly: after output that is an engine error (never a
    silent "stop"), before any output the request goes to another replica."""
    handle = FakeHandle([FakeStream([Hello("a"), [_output(5)], [_output(6)]])])
    with pytest.raises(EngineDeadError, match="replica a"):
        asyncio.run(_collect(RemoteEngine(handle, DESCRIPTION)))
    handle = FakeHandle([FakeStream([Hello("a")]), FakeStream([Hello("b"), [_output(5, finished=True)]])])
    engine = RemoteEngine(handle, DESCRIPTION)
    assert [o.finished for o in asyncio.run(_collect(engine))] == [True]
    assert handle.calls[1].exclude == ("a",) and engine.retries == 1


def test_every_attempt_lost_is_an_engine_error() -> None:
    handle = FakeHandle([FakeStream([], ActorDiedError()) for _ in range(3)])
    with pytest.raises(EngineDeadError, match="no engine replica"):
        asyncio.run(_collect(RemoteEngine(handle, DESCRIPTION, max_attempts=3)))


def test_refusals_arrive_typed_and_back_pressure_is_overload() -> None:
    refusal = RemoteError.of(ContextLengthError("too long", "max_tokens"))
    with pytest.raises(ContextLengthError) as info:
        asyncio.run(_collect(RemoteEngine(FakeHandle([FakeStream([Hello("a"), refusal])]), DESCRIPTION)))
    assert info.value.param == "max_tokens" and info.value.code == "context_length_exceeded"
    with pytest.raises(EngineOverloadedError):
        asyncio.run(_collect(RemoteEngine(FakeHandle([FakeStream([], BackPressureError(
            num_queued_requests=9, max_queued_requests=8))]), DESCRIPTION)))


def test_a_consumer_that_leaves_cancels_the_ray_stream_and_stops_reach_the_replica() -> None:
    stream = FakeStream([Hello("a"), [_output(5)], [_output(6)], [_output(7, finished=True)]])
    handle = FakeHandle([stream])
    engine = RemoteEngine(handle, DESCRIPTION)

    async def first_then_leave() -> None:
        outputs = engine.generate("r", [1, 2, 3], SamplingParams(max_tokens=4))
        await outputs.__anext__()
        engine.finish_sample("r", 0)
        await asyncio.sleep(0.01)
        await outputs.aclose()  # type: ignore[attr-defined]

    asyncio.run(first_then_leave())
    assert stream.cancelled
    assert handle.controls == [ControlCall("a", "r", 0)]
