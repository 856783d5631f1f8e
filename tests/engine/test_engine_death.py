"""A broken engine fails every request in flight with a clear error and refuses new work (`alive` turns False),
so /health reports it and the server exits for a supervisor; one failed step alone fails only that step's requests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qwen35.engine import async_engine as async_engine_module
from qwen35.engine.args import EngineArgs
from qwen35.engine.build import build_async_engine
from qwen35.engine.request import EngineDeadError, SamplingParams
from qwen35.serving.errors import OverloadedError, from_engine_error


@pytest.fixture()
def aengine(tiny_checkpoint: Any) -> Any:
    engine = build_async_engine(EngineArgs(model=str(tiny_checkpoint), dtype="float32", max_model_len=256,
                                           max_num_seqs=4, progress=False))
    yield engine
    engine.shutdown()


async def _run(aengine: Any, request_id: str, max_tokens: int = 4) -> list[Any]:
    return [o async for o in aengine.generate(request_id, [1, 2, 3], SamplingParams(max_tokens=max_tokens,
                                                                                  temperature=0.0))]


def test_steps_failing_in_a_row_kill_the_engine(aengine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert aengine.alive
    real_step = aengine.engine.step
    failures = {"left": 1}

    def flaky_step() -> Any:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("one bad step")
        return real_step()

    monkeypatch.setattr(aengine.engine, "step", flaky_step)

    async def one_failure_then_fine() -> None:
        with pytest.raises(RuntimeError, match="one bad step"):
            await _run(aengine, "a")
        assert aengine.alive  # one failed step fails its requests only
        assert (await _run(aengine, "b"))[-1].finished

    asyncio.run(one_failure_then_fine())

    def broken_step() -> Any:
        raise RuntimeError("device lost")

    monkeypatch.setattr(aengine.engine, "step", broken_step)

    async def broken() -> None:
        for i in range(async_engine_module.MAX_STEP_FAILURES):
            with pytest.raises((RuntimeError, EngineDeadError)):
                await _run(aengine, f"c{i}")
        assert not aengine.alive and "device lost" in (aengine.death or "")
        with pytest.raises(EngineDeadError) as refused:
            await _run(aengine, "d")
        error = from_engine_error(refused.value)
        assert isinstance(error, OverloadedError) and error.code == "engine_unavailable" and error.retry_after_s

    asyncio.run(broken())


def test_a_dead_engine_thread_fails_the_requests_in_flight(aengine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def fatal_step() -> Any:
        raise SystemExit("thread killed")  # not an Exception: the loop does not catch it, the thread ends

    async def main() -> None:
        monkeypatch.setattr(aengine.engine, "step", fatal_step)
        with pytest.raises(EngineDeadError, match="thread"):
            await asyncio.wait_for(_run(aengine, "x", max_tokens=50), timeout=30)
        assert not aengine.alive

    asyncio.run(main())
