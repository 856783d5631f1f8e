"""The HTTP front as a Ray Serve ingress: the same FastAPI app, the same four APIs, over `RemoteEngine`.

Owns one front replica's wiring: it parses the `qwen35 serve` flags it was given, asks an engine replica what the
model is (vocabulary, context length, media), opens the shared platform store (SQLite on one host, PostgreSQL
across hosts) with its own heartbeat, and builds the app with `api.server.build_application`. Everything that
must hold across fronts lives in that store: keys, credits, ledger, holds, rate and concurrency limits, stored
responses; a dead front's holds are freed by the others' liveness sweep.
"""

from __future__ import annotations

from typing import Any

from qwen35.cluster.flags import parse_serve_flags
from qwen35.cluster.remote_engine import RemoteEngine


class Front:
    async def __init__(self, flags: list[str], engine: Any) -> None:  # type: ignore[misc]  # Ray awaits it
        from qwen35.api.logs import configure_logging
        from qwen35.api.server import build_application, open_platform

        args = parse_serve_flags(flags)
        configure_logging(args.log_level, args.log_format)
        description = await engine.describe.remote()
        self.remote_engine = RemoteEngine(engine, description, max_attempts=args.replica_retries + 1)
        self._platform = open_platform(args)
        self._asgi = build_application(args, self.remote_engine, self._platform)

    def __serve_build_asgi_app__(self) -> Any:
        return self._asgi

    def __del__(self) -> None:  # Ray Serve calls it on shutdown, after draining
        platform = getattr(self, "_platform", None)
        if platform is not None:
            platform.close()
