"""A real `qwen35 serve` (tiny checkpoint, SQLite store) whose store is locked mid-run, then killed with kill -9
before the store comes back: every answer it served has its ledger record after the next start (the usage
journal survived the kill and was adopted), and no hold stays open.

Requests: four non-streamed and two streamed chat completions of 800 forced tokens (min_tokens), all admitted
before the lock; `--store-lock-timeout 1` so a refused write is noticed in a second, not thirty.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from qwen35.platform import Platform, schema
from qwen35.platform.store import read_tx
from serve_process import Serve

MODEL = "qwen3-5-4b"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Count."}], "max_tokens": 800,
        "min_tokens": 800, "reasoning_effort": "none"}


def _states(data_dir: Path) -> dict[str, int]:
    with Platform.open(data_dir=data_dir, journal=False) as p, read_tx(p.engine) as conn:
        a = schema.admissions
        return {str(s): int(n) for s, n in conn.execute(select(a.c.state, func.count()).group_by(a.c.state)).all()}


def _one(base_url: str, secret: str, stream: bool, out: list[tuple[bool, str | None]]) -> None:
    headers = {"authorization": f"Bearer {secret}"}
    with httpx.Client(timeout=120) as client:
        if not stream:
            response = client.post(f"{base_url}/v1/chat/completions", json=BODY, headers=headers)
            out.append((response.status_code == 200, response.json().get("id")))
            return
        served, rid = False, None
        with client.stream("POST", f"{base_url}/v1/chat/completions", json={**BODY, "stream": True},
                           headers=headers) as response:
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                data: dict[str, Any] = json.loads(line[6:])
                rid = rid or data.get("id")
                served = served or any(c.get("finish_reason") for c in data.get("choices", []))
        out.append((served, rid))


def test_locked_store_then_kill9_every_served_answer_is_billed_after_restart(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "store"
    with Platform.open(data_dir=data_dir) as platform:
        _, secret = platform.create_key("k")
    server = Serve(tiny_checkpoint, data_dir, "--store-lock-timeout", "1")
    outcomes: list[tuple[bool, str | None]] = []
    try:
        threads = [threading.Thread(target=_one, args=(server.base_url, secret, n >= 4, outcomes)) for n in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while _states(data_dir).get("active", 0) < 6:
            assert time.monotonic() < deadline, _states(data_dir)
            time.sleep(0.02)
        lock = sqlite3.connect(data_dir / "platform.sqlite3", isolation_level=None, timeout=10)
        lock.execute("BEGIN EXCLUSIVE")  # the store refuses writes from here on
        try:
            for t in threads:
                t.join(timeout=120)
            health = httpx.get(f"{server.base_url}/health", timeout=10)
            deadline = time.monotonic() + 15
            while health.status_code != 503 and time.monotonic() < deadline:  # the next heartbeat notices
                time.sleep(0.2)
                health = httpx.get(f"{server.base_url}/health", timeout=10)
            assert health.status_code == 503 and health.json()["store"]["journal_pending"] == 6, health.text
            server.kill9()  # with six records only in its journal
        finally:
            lock.execute("ROLLBACK")
            lock.close()
    finally:
        server.stop()
    assert len(outcomes) == 6 and all(served for served, _ in outcomes), outcomes
    with Platform.open(data_dir=data_dir) as platform:
        assert all(platform.get_usage(str(rid)) is None for _, rid in outcomes)  # not in the store yet
    restarted = Serve(tiny_checkpoint, data_dir)
    try:
        with Platform.open(data_dir=data_dir, journal=False) as platform:
            records = [platform.get_usage(str(rid)) for _, rid in outcomes]
            assert all(r is not None and r.output_tokens >= 800 for r in records), records
            assert len(platform.list_usage()) == 6  # exactly once each
        states = _states(data_dir)
        assert states == {"settled": 6}, states
        assert httpx.get(f"{restarted.base_url}/health", timeout=10).status_code == 200
    finally:
        restarted.stop()
