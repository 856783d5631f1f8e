"""AsyncEngine: runs the engine loop on a background thread and streams per-request outputs to asyncio.

Owns the hand-off between event-loop threads and the engine thread: requests and aborts are queued as commands
and applied between steps (never while a step runs), outputs are pushed to per-request asyncio queues with
`call_soon_threadsafe`. Input is validated once, in `generate` on the caller's side (`LLMEngine.validate`), so
refusals raise at the caller's first iteration; the engine thread only admits. Invariant: a consumer that stops
listening (closed generator, client gone) aborts its request, so nothing it held stays allocated.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from qwen35.engine.engine import EngineStats, LLMEngine
from qwen35.engine.request import EngineDeadError, EngineError, EngineOutput, MediaInput, SamplingParams

log = logging.getLogger(__name__)
MAX_STEP_FAILURES = 3


@dataclass
class _Listener:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[EngineOutput | BaseException]


@dataclass(frozen=True)
class _Add:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    media: tuple[MediaInput, ...] = ()


@dataclass(frozen=True)
class _Abort:
    request_id: str


@dataclass(frozen=True)
class _FinishSample:
    request_id: str
    index: int


_Command = _Add | _Abort | _FinishSample


class AsyncEngine:
    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self.vocab_size = engine.vocab_size
        self.max_model_len = engine.max_model_len
        self.supports_media = engine.runner.vision_patch_dim is not None
        self.model_dir = engine.model_dir
        self._commands: deque[_Command] = deque()
        self._listeners: dict[str, _Listener] = {}
        self._lock = threading.Lock()  # guards _commands / _listeners and admission checks
        self._wake = threading.Event()
        self._stopped = False
        self.death: str | None = None  # why the engine thread died; the server exits for a supervisor to restart
        self._thread = threading.Thread(target=self._run, name="qwen35-engine", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """False once the engine thread died (or failed MAX_STEP_FAILURES steps in a row) or was shut down."""
        return self.death is None and not self._stopped and self._thread.is_alive()

    def stats(self) -> EngineStats:
        """A snapshot of the engine's occupancy for metrics (read without the lock: counts, not a transaction)."""
        return self.engine.stats()

    # ---- public API (event-loop side) --------------------------------------------------------------------------
    async def generate(
        self,
        request_id: str,
        prompt_token_ids: Sequence[int],
        params: SamplingParams,
        media: Sequence[MediaInput] = (),
    ) -> AsyncIterator[EngineOutput]:
        """Stream the request's outputs; raises typed engine errors at once for bad input or a full queue."""
        listener = _Listener(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            if self.death is not None or self._stopped:
                raise EngineDeadError(self.death or "the engine is shut down")
            if request_id in self._listeners:
                raise EngineError(f"request id {request_id!r} is already running", "request_id")
            self.engine.validate(prompt_token_ids, params, media)
            self.engine.check_admission(request_id)  # refuse a full queue now; the engine thread checks again
            self._listeners[request_id] = listener
            self._commands.append(_Add(request_id, list(prompt_token_ids), params, tuple(media)))
        self._wake.set()
        finished = False
        try:
            while True:
                item = await listener.queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item.finished:
                    finished = True
                yield item
                if finished:
                    return
        finally:
            if not finished:
                self.abort_nowait(request_id)

    def abort_nowait(self, request_id: str) -> None:
        with self._lock:
            self._listeners.pop(request_id, None)
            self._commands.append(_Abort(request_id))
        self._wake.set()

    def finish_sample(self, request_id: str, index: int) -> None:
        """Stop sample `index` of a request (its stop string matched); the others go on."""
        with self._lock:
            self._commands.append(_FinishSample(request_id, index))
        self._wake.set()

    async def abort(self, request_id: str) -> None:
        self.abort_nowait(request_id)

    def shutdown(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=10)

    # ---- engine thread -----------------------------------------------------------------------------------------
    def _apply_commands(self) -> None:
        with self._lock:
            commands = list(self._commands)
            self._commands.clear()
        for command in commands:
            if isinstance(command, _Add):
                try:
                    self.engine.admit(command.request_id, command.prompt_token_ids, command.params, command.media)
                except Exception as exc:  # noqa: BLE001 - validated already; a race (queue filled meanwhile) lands here
                    self._deliver(command.request_id, exc)
            elif isinstance(command, _FinishSample):
                final = self.engine.finish_sample(command.request_id, command.index)
                if final is not None:
                    self._deliver(command.request_id, final)
            else:
                self.engine.abort_request(command.request_id)

    def _deliver(self, request_id: str, item: EngineOutput | BaseException) -> None:
        with self._lock:
            listener = self._listeners.get(request_id)
            if listener is not None and (isinstance(item, BaseException) or item.finished):
                del self._listeners[request_id]
        if listener is not None:
            listener.loop.call_soon_threadsafe(listener.queue.put_nowait, item)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - the thread's end is reported, whatever killed it
            log.exception("engine thread died")
            self._die(f"the engine thread died: {exc!r}")
        else:
            if not self._stopped and self.death is None:
                self._die("the engine thread ended")

    def _die(self, reason: str) -> None:
        """Fail every request in flight with a clear error; refuse new ones (`alive` turns False)."""
        self.death = self.death or reason
        with self._lock:
            listeners = list(self._listeners)
        for request_id in listeners:
            self._deliver(request_id, EngineDeadError(reason))

    def _loop(self) -> None:
        failures = 0
        while not self._stopped:
            self._apply_commands()
            if not self.engine.has_unfinished():
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
                failures = 0
            except Exception as exc:  # a bug must not kill the server: fail the running requests, keep serving
                failures += 1
                log.exception("engine step failed; failing %d running requests", len(self.engine.requests))
                running = list(self.engine.requests)
                for request_id in running:
                    self.engine.abort_request(request_id)
                if failures >= MAX_STEP_FAILURES:  # a broken device or state: step after step fails
                    self._die(f"{failures} engine steps failed in a row; last: {exc!r}")
                    return
                for request_id in running:
                    self._deliver(request_id, RuntimeError(f"engine error: {exc}"))
                continue
            for output in outputs:
                self._deliver(output.request_id, output)
