"""kill -9 of a real `qwen35 serve` holding all of a concurrency-limited key's slots, then a restart: the key serves
at once (issue 14: the dead process's holds used to block the key with 429 for the hold TTL, an hour).

The tiny checkpoint, one store directory, two server processes one after the other; streams kept open with
`min_tokens`. Clients are plain httpx on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from qwen35.platform import KeyLimits, Platform
from serve_process import Serve

MODEL = "qwen3-5-4b"
LONG = {"model": MODEL, "messages": [{"role": "user", "content": "Count."}], "max_tokens": 4000, "min_tokens": 4000,
        "stream": True, "reasoning_effort": "none", "logprobs": True, "top_logprobs": 20}  # ~3 kB per token


def _open_stream(stack: ExitStack, base_url: str, secret: str) -> None:
    """Start a long stream on a raw socket with a tiny receive buffer and read until its first content chunk, then
    stop reading: the server's flow control pauses the stream, so the request stays admitted and running."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = stack.enter_context(socket.socket())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no receive-window autotuning
    sock.settimeout(60)
    sock.connect((host, int(port)))
    body = json.dumps(LONG).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    sock.sendall(head.encode() + body)
    received = b""
    while b'"delta":{"content":' not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:300]


def test_kill9_then_restart_a_concurrency_limited_key_serves_at_once(tiny_checkpoint: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    with Platform.open(data_dir=data_dir) as platform:
        _, secret = platform.create_key("limited", limits=KeyLimits(max_concurrent=3))
    first = Serve(tiny_checkpoint, data_dir)
    try:
        url = f"{first.base_url}/v1/chat/completions"
        with httpx.Client(timeout=60) as client, ExitStack() as stack:
            for _ in range(3):
                _open_stream(stack, first.base_url, secret)
            refused = client.post(url, json={**LONG, "stream": False, "max_tokens": 4, "min_tokens": 0},
                                  headers={"authorization": f"Bearer {secret}"})
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
            first.kill9()  # the three streams die with the process: their holds stay open in the store
    finally:
        first.stop()
    second = Serve(tiny_checkpoint, data_dir)
    try:
        url = f"{second.base_url}/v1/chat/completions"
        with httpx.Client(timeout=60) as client, ExitStack() as stack:
            started = time.monotonic()
            for _ in range(3):  # all three slots, at once, right after the restart
                _open_stream(stack, second.base_url, secret)
            assert time.monotonic() - started < 30
            refused = client.post(url, json={**LONG, "stream": False, "max_tokens": 4, "min_tokens": 0},
                                  headers={"authorization": f"Bearer {secret}"})
            assert refused.status_code == 429  # the limit itself still holds
    finally:
        second.stop()
    with Platform.open(data_dir=data_dir) as platform:
        from sqlalchemy import func, select

        from qwen35.platform import schema

        a = schema.admissions
        with platform.engine.connect() as conn:
            states = dict(conn.execute(select(a.c.state, func.count()).group_by(a.c.state)).all())
        assert states.get("orphaned") == 3  # the dead server's three holds, freed by the second server
        assert states.get("active", 0) == 0  # the second server's own were settled or freed on its way out
