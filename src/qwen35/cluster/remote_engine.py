"""The front's engine: the `AsyncEngine` protocol of the serving core, over the engine replicas of a Ray Serve
deployment.

Owns one generation's life across Ray: it streams `EngineCall`s through the deployment handle (the prefix-affinity
router picks the replica), turns `RemoteError`s back into the engine's typed errors, and cancels the Ray stream
when the consumer stops (the replica aborts the request). A replica lost before any output reached the consumer
is retried on another replica (at most `max_attempts` in all); lost after output, the generation ends with
`EngineDeadError` (503 engine_unavailable, or the family's in-stream error) and is billed for what was produced,
once, by the front that owns its ledger record. A Ray stream that ends without the request's final output (a
replica stopped or killed can end its streams cleanly rather than with an actor error) is a lost replica too, never
a normal end. Invariant: no request is ever running on two replicas.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError

from qwen35.cluster import registry
from qwen35.cluster.calls import ControlCall, EngineCall, Hello, RemoteError
from qwen35.engine.engine import EngineStats
from qwen35.engine.request import EngineDeadError, EngineOutput, EngineOverloadedError, MediaInput, SamplingParams

log = logging.getLogger(__name__)


class ReplicaStreamEnded(Exception):
    """A replica's stream ended cleanly before the request's final output: the replica is gone."""


REPLICA_LOST = (ActorDiedError, ActorUnavailableError, RayActorError, ReplicaStreamEnded)
STAT_FIELDS = tuple(EngineStats.__dataclass_fields__)


class RemoteEngine:
    def __init__(self, handle: Any, description: dict[str, Any], max_attempts: int = 3) -> None:
        self._handle = handle
        self._stream = handle.options(stream=True)
        self.vocab_size = int(description["vocab_size"])
        self.max_model_len = int(description["max_model_len"])
        self.supports_media = bool(description["supports_media"])
        self.model_dir = description.get("model_dir")
        self.max_attempts = max_attempts
        self.placements: dict[str, str] = {}  # request id -> replica running it now
        self.served: dict[str, int] = {}  # replica -> generations it started (this front)
        self.retries = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def alive(self) -> bool:
        return True  # the front lives while any replica can come back: Ray replaces dead replicas

    async def generate(self, request_id: str, prompt_token_ids: Sequence[int], params: SamplingParams,
                       media: Sequence[MediaInput] = ()) -> AsyncIterator[EngineOutput]:
        exclude: list[str] = []
        for attempt in range(self.max_attempts):
            call = EngineCall(request_id, list(prompt_token_ids), params, tuple(media), tuple(exclude))
            stream = self._stream.generate.remote(call)
            replica, produced, done = None, False, False
            try:
                async for item in stream:
                    if isinstance(item, Hello):
                        replica = item.replica_id
                        self.placements[request_id] = replica
                        self.served[replica] = self.served.get(replica, 0) + 1
                        continue
                    if isinstance(item, RemoteError):
                        done = True
                        raise item.to_exception()
                    for output in item:  # the outputs ready together on the replica
                        produced = True
                        yield output
                        if output.finished:
                            done = True
                            return
                done = True
                raise ReplicaStreamEnded(f"the stream from engine replica {replica} ended before the request did")
            except BackPressureError as exc:
                done = True
                raise EngineOverloadedError("every engine replica is at its limit; retry shortly") from exc
            except REPLICA_LOST as exc:
                done = True
                if produced:
                    raise EngineDeadError(f"the engine replica {replica} serving this request was lost") from exc
                log.warning("engine replica %s lost before request %s produced output; retrying (%d/%d)",
                            replica, request_id, attempt + 1, self.max_attempts)
                if replica is not None:
                    exclude.append(replica)
                self.retries += 1
            finally:
                self.placements.pop(request_id, None)
                if not done:
                    stream.cancel()  # the consumer left: the replica's generator aborts the engine request
        raise EngineDeadError("no engine replica could take the request")

    async def abort(self, request_id: str) -> None:
        """Closing the generation's stream aborts it on its replica; nothing else to do."""

    def finish_sample(self, request_id: str, index: int) -> None:
        replica = self.placements.get(request_id)
        if replica is None:
            return
        response = self._handle.finish_sample.remote(ControlCall(replica, request_id, index))
        task = asyncio.get_running_loop().create_task(_settle(response))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def replica_stats(self) -> dict[str, EngineStats]:
        """The last routing stats of every replica this front's router knows (refreshed by Ray every few
        seconds)."""
        stats: dict[str, EngineStats] = {}
        for router in list(registry.ROUTERS):
            for rid, raw in router.replica_stats().items():
                if all(name in raw for name in STAT_FIELDS):
                    stats[rid] = EngineStats(**{name: int(raw[name]) for name in STAT_FIELDS})
        return stats

    def stats(self) -> EngineStats:
        """All replicas together."""
        per = list(self.replica_stats().values())
        return EngineStats(**{name: sum(getattr(s, name) for s in per) for name in STAT_FIELDS})


async def _settle(response: Any) -> None:
    try:
        await response
    except Exception:  # noqa: BLE001 - a stop that arrives after the request ended changes nothing
        log.debug("finish_sample call failed", exc_info=True)
