"""A local fake of Linkup's `POST /v1/search` on 127.0.0.1, for tests (the real service is never contacted).

`FakeLinkup` answers each request with the next scripted reply (status, JSON body, delay; the last one repeats)
and records what it received (path, headers, JSON body), so tests can check the wire both ways.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAKE_KEY = "lk-test-SECRET-4f9c2a7e"  # asserted absent from every response, error and log line


def results(*items: tuple[str, str, str]) -> dict[str, Any]:
    """A `searchResults` answer from (name, url, content) triples."""
    return {"results": [{"type": "text", "name": n, "url": u, "content": c} for n, u, c in items]}


DEFAULT_RESULTS = results(
    ("Paris weather today", "https://weather.example.com/paris", "Sunny, 21 C, light wind from the west."),
    ("Paris - Wikipedia", "https://en.wikipedia.org/wiki/Paris", "Paris is the capital of France."),
)


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: DEFAULT_RESULTS)
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class FakeLinkup:
    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.base_url = ""

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies = list(replies) or [Reply()]
            self.received.clear()

    def _next(self) -> Reply:
        with self._lock:
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with fake._lock:
                    fake.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                reply = fake._next()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = json.dumps(reply.body).encode() if not isinstance(reply.body, bytes) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        return Handler


@contextlib.contextmanager
def fake_linkup() -> Iterator[FakeLinkup]:
    fake = FakeLinkup()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
