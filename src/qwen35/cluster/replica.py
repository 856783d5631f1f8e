"""One engine replica: an `AsyncEngine` in its own Ray actor, streaming `EngineOutput`s to the front.

Owns the replica side of the front/replica protocol (`calls`): every stream starts with `Hello(replica id)`, then
the engine's outputs; refusals travel as `RemoteError` values. A cancelled stream (client gone, front closed the
generation) aborts the engine request through `AsyncEngine.generate`'s own cleanup, so nothing stays allocated.
Also the hooks Ray Serve calls: `check_health` (fails once the engine thread died: Ray replaces the replica) and
`record_routing_stats` (the occupancy the router and the front's /metrics read). Grammars unpickle through this
process's `GrammarCompiler` (built before the first call).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

from qwen35.cluster.calls import ControlCall, EngineCall, Hello, RemoteError
from qwen35.engine.args import EngineArgs
from qwen35.engine.request import EngineOutput

log = logging.getLogger(__name__)


class EngineReplica:
    def __init__(self, engine_args: dict[str, Any], threads: int | None = None) -> None:
        import torch

        from qwen35.engine.build import build_async_engine
        from qwen35.processor import load_processor
        from qwen35.processor.grammar import GrammarCompiler

        if threads:
            torch.set_num_threads(int(threads))
        self.engine = build_async_engine(EngineArgs(**engine_args))
        tokenizer = load_processor(self.engine.model_dir).tokenizer
        self.grammars = GrammarCompiler(tokenizer, int(self.engine.vocab_size), tokenizer.stop_token_ids)
        self.replica_id = _replica_id()
        log.info("engine replica %s ready (max_model_len %d)", self.replica_id, self.engine.max_model_len)

    def describe(self) -> dict[str, Any]:
        """What the front needs to build its serving core."""
        model_dir = self.engine.model_dir
        return {"replica_id": self.replica_id, "vocab_size": int(self.engine.vocab_size),
                "max_model_len": int(self.engine.max_model_len), "supports_media": bool(self.engine.supports_media),
                "model_dir": None if model_dir is None else str(model_dir)}

    async def generate(self, call: EngineCall) -> AsyncIterator[Hello | list[EngineOutput] | RemoteError]:
        """Hello, then the engine's outputs in lists: every output ready when the stream can send again goes in
        one Ray message (a loaded replica sends fewer, larger messages; an idle one sends each step at once)."""
        yield Hello(self.replica_id)
        outputs = self.engine.generate(call.request_id, call.prompt_token_ids, call.params, call.media)
        ready: asyncio.Queue[EngineOutput | BaseException | None] = asyncio.Queue()
        pump = asyncio.ensure_future(_pump(outputs, ready))
        try:
            while True:
                batch: list[EngineOutput] = []
                item = await ready.get()
                while True:
                    if item is None or isinstance(item, BaseException):
                        break
                    batch.append(item)
                    if ready.empty():
                        break
                    item = ready.get_nowait()
                if batch:
                    yield batch
                if isinstance(item, BaseException):
                    yield RemoteError.of(item)  # every refusal reaches the front as data, typed
                    return
                if item is None:
                    return
        finally:
            pump.cancel()  # the consumer left (cancelled stream): the engine generator's cleanup aborts it
            await asyncio.gather(pump, return_exceptions=True)

    def finish_sample(self, call: ControlCall) -> None:
        self.engine.finish_sample(call.request_id, call.index)

    def check_health(self) -> None:
        if not self.engine.alive:
            raise RuntimeError(self.engine.death or "the engine is not running")

    def record_routing_stats(self) -> dict[str, Any]:
        return {"replica_id": self.replica_id, "alive": self.engine.alive,
                **dataclasses.asdict(self.engine.stats())}

    def __del__(self) -> None:  # Ray Serve calls it on shutdown, after draining
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()


async def _pump(outputs: AsyncIterator[EngineOutput],
                ready: asyncio.Queue[EngineOutput | BaseException | None]) -> None:
    """Move the engine's outputs into `ready` as they come; None at the end, the exception if one is raised."""
    try:
        async for output in outputs:
            ready.put_nowait(output)
        ready.put_nowait(None)
    except Exception as exc:  # noqa: BLE001 - handed to the stream as data
        ready.put_nowait(exc)
    finally:
        await outputs.aclose()  # type: ignore[attr-defined]


def _replica_id() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside Ray Serve (tests of the class itself)
        return "local"
