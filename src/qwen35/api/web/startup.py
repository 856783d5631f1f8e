"""What `qwen35 serve` says when it is up: the first-run admin key (once, as Jupyter prints its token) and the URLs.

Owns `first_run_key` (asks the platform for the admin key of an empty store) and `run_server` (uvicorn, plus one
announcement after the socket is bound, so the URL printed is the one that answers, also with `--port 0`).
Imports uvicorn lazily (the CLI's `--help` stays quick). Invariant: the secret is printed only on the start that
created it; every later start prints the URLs and nothing secret.
"""

from __future__ import annotations

import socket
import sys
from typing import Any


def first_run_key(platform: Any) -> str | None:
    """The secret of the admin key created now because the store had no key, else None."""
    made = platform.create_first_admin_key()
    return None if made is None else made[1]


def announcement(base_url: str, secret: str | None) -> str:
    """The lines printed once the server answers."""
    lines = [f"qwen35: ready at {base_url}/  (playground; dashboard at {base_url}/dashboard, API at {base_url}/v1)"]
    if secret is not None:
        lines += [
            "qwen35: first run: created an admin API key; it is shown this once (the store keeps only its hash):",
            f"    {secret}",
            "qwen35: open this URL to sign in to the playground with it:",
            f"    {base_url}/#key={secret}",
        ]
    return "\n".join(lines)


def _base_url(host: str, listeners: list[socket.socket]) -> str:
    port = listeners[0].getsockname()[1] if listeners else 0
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # a wildcard bind is reachable on loopback
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}"


def run_server(app: Any, host: str, port: int, log_level: str, secret: str | None,
               drain_timeout_s: float = 30.0) -> int:
    """Serve until stopped; prints `announcement` right after startup (stderr, flushed). SIGTERM drains (running
    answers finish within `drain_timeout_s`); returns the exit code (1 when the engine died)."""
    import uvicorn

    from qwen35.api.drain import ServingServer

    def announce(server: ServingServer) -> None:
        listeners = [s for srv in getattr(server, "servers", []) for s in (srv.sockets or [])]
        print(announcement(_base_url(host, listeners), secret), file=sys.stderr, flush=True)

    # log_config=None: uvicorn's loggers go through qwen35's handler (format, request ids, secret masking)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                            log_config=None)
    server = ServingServer(config, app.state.drain, app.state.core.engine, drain_timeout_s, on_started=announce)
    server.run()
    return server.exit_code
