"""Graceful drain and supervised exit: SIGTERM lets running answers finish, a dead engine ends the process.

Owns `Drain` (requests in flight, the draining flag and its deadline), `DrainMiddleware` (while draining, new
generation requests get a 503 with retry-after in their family's format; reads and /health still answer, /ready
says 503) and `ServingServer` (uvicorn's server: the first SIGTERM / SIGINT starts the drain instead of closing
the sockets, the server stops once nothing is in flight or the drain deadline passed; a second signal stops at
once; an engine that died makes it stop with exit code 1, so a supervisor restarts it).
Invariant: nothing admitted is cut while the deadline has not passed; every refusal during a drain is retryable.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from qwen35.serving.errors import UnavailableError

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 30.0
EXIT_ENGINE_DEAD = 1
_GENERATION_PREFIXES = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages")


class Drain:
    """Requests in flight and whether the server is draining (one per app, on `app.state.drain`)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False
        self.deadline: float | None = None

    def begin(self, timeout_s: float) -> None:
        if not self.draining:
            self.draining = True
            self.deadline = time.monotonic() + timeout_s

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    @property
    def done(self) -> bool:
        """Draining and either idle or out of time."""
        if not self.draining:
            return False
        return self.in_flight == 0 or (self.deadline is not None and time.monotonic() >= self.deadline)


class DrainMiddleware:
    """While draining, POSTs that would start generating are refused with a retryable 503."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.drain.draining and scope["type"] == "http" and scope.get("method") == "POST"
                and str(scope.get("path", "")).startswith(_GENERATION_PREFIXES)
                and not str(scope.get("path", "")).endswith("/count_tokens")):
            request = Request(scope, receive)
            error = UnavailableError("The server is shutting down; retry on another instance.", code="draining",
                                     retry_after_s=5.0)
            response = request.app.state.error_families.render(request, error)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ServingServer(uvicorn.Server):
    """uvicorn's server with a drain on SIGTERM / SIGINT and an exit when the engine dies."""

    def __init__(self, config: uvicorn.Config, drain: Drain, engine: Any, drain_timeout_s: float = DRAIN_TIMEOUT_S,
                 on_started: Callable[[ServingServer], None] | None = None) -> None:
        super().__init__(config)
        self.drain = drain
        self.engine = engine
        self.drain_timeout_s = drain_timeout_s
        self.on_started = on_started
        self.exit_code = 0

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit and self.on_started is not None:
            self.on_started(self)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or self.drain_timeout_s <= 0:
            super().handle_exit(sig, frame)  # the second signal: stop now
            return
        log.warning("%s: draining (%d in flight; up to %.0f s); new generations get 503",
                    signal.Signals(sig).name, self.drain.in_flight, self.drain_timeout_s)
        self.drain.begin(self.drain_timeout_s)

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if self.drain.done:
            log.warning("drained (%d still in flight): stopping", self.drain.in_flight)
            return True
        if not getattr(self.engine, "alive", True):
            log.error("the engine died (%s): stopping with exit code %d for a supervisor to restart the server",
                      getattr(self.engine, "death", None), EXIT_ENGINE_DEAD)
            self.exit_code = EXIT_ENGINE_DEAD
            return True
        return False
