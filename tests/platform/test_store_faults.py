"""The store fails mid-run (issue 14: 19 answers served, 15 never billed, holds left open): no answer is served
without its ledger record, and no hold stays open once the store is back.

The real app (processor, serving core, platform, metering) over the scripted engine (the engine is not what is
tested), on both backends. The fault is real: another connection takes the store's write lock (SQLite
`BEGIN EXCLUSIVE`, PostgreSQL `LOCK TABLE ... IN EXCLUSIVE MODE`) while eight requests - all four APIs, streamed
and not - are running; the platform's lock wait is 0.5 s. With the usage journal (the default) every answer is
served and billed once the lock goes; without it every answer is refused (503 / the family's in-stream error) and
its hold released. Admission during the outage is a 503 in each family's format; /health (from memory) and
/ready answer 503 while the store refuses writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from qwen35.api.app import create_app
from qwen35.api.settings import ServerSettings
from qwen35.platform import Platform, schema
from qwen35.platform.store import read_tx
from qwen35.processor import load_processor
from qwen35.serving.core import ServingCore
from scripted_app import serve
from scripted_engine import ScriptedEngine

MODEL = "qwen3-5-4b"
USER = [{"role": "user", "content": "hi"}]
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"model": MODEL, "messages": USER, "max_tokens": 200}),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 200}),
    ("/v1/responses", {"model": MODEL, "input": "hi", "max_output_tokens": 200}),
    ("/v1/messages", {"model": MODEL, "messages": USER, "max_tokens": 200}),
]
NUM_TOKENS = 60
STEP_S = 0.05


@dataclass
class Outcome:
    path: str
    stream: bool
    status: int
    request_id: str | None = None
    served: bool = False  # the client saw the normal end of the answer
    error: Any = None


def _call(base_url: str, secret: str, path: str, body: dict[str, Any], stream: bool) -> Outcome:
    headers = {"authorization": f"Bearer {secret}", "anthropic-version": "2023-06-01"}
    out = Outcome(path, stream, 0)
    with httpx.Client(timeout=60) as client:
        if not stream:
            response = client.post(base_url + path, json=body, headers=headers)
            out.status = response.status_code
            payload = response.json()
            if response.status_code == 200:
                out.request_id, out.served = payload["id"], True
            else:
                out.error = (payload, dict(response.headers))
            return out
        with client.stream("POST", base_url + path, json={**body, "stream": True}, headers=headers) as response:
            out.status = response.status_code
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data and data.get("type") in (None, "error"):
                    out.error = data
                elif event == "message_start":
                    out.request_id = data["message"]["id"]
                elif event == "message_stop":
                    out.served = True
                elif event == "response.created":
                    out.request_id = data["response"]["id"]
                elif event == "response.completed":
                    out.served = True
                elif event == "response.failed":
                    out.error = data
                elif event is None:
                    out.request_id = out.request_id or data.get("id")
                    if any(c.get("finish_reason") for c in data.get("choices", [])):
                        out.served = True
    return out


@contextmanager
def store_locked(platform: Platform) -> Iterator[None]:
    """Another connection holds the store's write lock (reads still work) until the block ends."""
    if platform.engine.dialect.name == "sqlite":
        conn = sqlite3.connect(platform.url.partition(":///")[2], isolation_level=None, timeout=10)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(platform.engine.url)
    with engine.connect() as conn:
        conn.execute(text("LOCK TABLE accounts, admissions, usage_records, ledger_entries, server_instances, "
                          "documents IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()
    engine.dispose()


def _states(platform: Platform) -> dict[str, int]:
    a = schema.admissions
    with read_tx(platform.engine) as conn:  # a plain read: never waits for the write lock
        return {str(s): int(n) for s, n in conn.execute(select(a.c.state, func.count()).group_by(a.c.state)).all()}


def _wait(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def app_on(store_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[Platform] = []

    @contextmanager
    def build(journal: bool) -> Iterator[tuple[str, str, Platform]]:
        processor = load_processor(None)
        tokens = processor.tokenizer.encode(" word" * NUM_TOKENS + "<|im_end|>")
        engine = ScriptedEngine([tokens], max_model_len=4096, step_delay_s=STEP_S)
        platform = Platform.open(database_url=store_url, journal=journal, journal_dir=tmp_path / "journal",
                                 lock_timeout_s=0.5)
        made.append(platform)
        platform.create_account("paying")
        platform.add_credits("paying", "1.00")
        _, secret = platform.create_key("k", account="paying")
        platform.start_instance(heartbeat_s=0.2, stale_after_s=10)
        app = create_app(ServingCore(engine, processor), platform, ServerSettings(max_model_len=4096))
        with serve(app) as base_url:
            engine.step_delay_s = 0.0  # warm the serving path up (the first request pays one-off costs)
            for path, body in CALLS:
                assert _call(base_url, secret, path, body, False).served
            engine.step_delay_s = STEP_S
            yield base_url, secret, platform

    yield build
    for platform in made:
        platform.close()


def _run_through_outage(base_url: str, secret: str, platform: Platform) -> list[Outcome]:
    """Eight requests admitted, the store locked while they run, released after they ended; checks the outage
    answers on the way (/health 503 within a second, /ready 503). Returns the eight outcomes."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def one(path: str, body: dict[str, Any], stream: bool) -> None:
        result = _call(base_url, secret, path, body, stream)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=one, args=(p, b, s)) for p, b in CALLS for s in (False, True)]
    for t in threads:
        t.start()
    _wait(lambda: _states(platform).get("active", 0) == len(threads), timeout=60)
    with store_locked(platform):
        for t in threads:
            t.join(timeout=60)
        # the outage seen from outside: admission is a 503 in each family's format, readiness says why
        refused = _call(base_url, secret, *CALLS[0], stream=False)
        assert refused.status == 503, refused
        body, headers = refused.error
        assert body["error"]["type"] == "server_error" and body["error"]["code"] == "store_unavailable"
        assert int(headers["retry-after"]) >= 1
        refused = _call(base_url, secret, *CALLS[3], stream=False)
        assert refused.status == 503 and refused.error[0]["error"]["type"] == "api_error", refused
        _wait(lambda: not platform.store_status()["ok"])
        with pytest.raises(Exception, match="refuses writes"):
            platform.check_store()
        started = time.monotonic()
        health = httpx.get(f"{base_url}/health", timeout=10)
        assert time.monotonic() - started < 1.0  # from memory, not a wait on the locked store
        assert health.status_code == 503 and health.json()["status"] == "store_unavailable", health.text
        assert health.json()["reason"] and "retry-after" in health.headers
        assert httpx.get(f"{base_url}/ready", timeout=10).status_code == 503
    assert len(outcomes) == len(threads)
    return outcomes


def test_with_the_journal_every_answer_is_served_and_billed_once_the_store_is_back(app_on: Any) -> None:
    with app_on(journal=True) as (base_url, secret, platform):
        outcomes = _run_through_outage(base_url, secret, platform)
        assert all(o.served and o.status == 200 and o.error is None for o in outcomes), outcomes
        assert platform.store_status()["journal_pending"] > 0  # held on disk while the store refused them
        _wait(lambda: platform.store_status()["journal_pending"] == 0 and platform.store_status()["ok"])
        assert httpx.get(f"{base_url}/health", timeout=10).status_code == 200
        for o in outcomes:
            record = platform.get_usage(str(o.request_id))
            assert record is not None, o
            assert record.output_tokens >= NUM_TOKENS and record.cost_nanos > 0
        states = _states(platform)
        assert states.get("active", 0) == 0 and states.get("settled") == len(outcomes) + len(CALLS), states
        account = platform.get_account("paying")
        assert account.balance_nanos == platform.ledger_sum("paying")
        recorded = platform.list_usage(account="paying")
        assert len(recorded) == len(outcomes) + len(CALLS)  # exactly once each (and the warm-up requests)
        assert account.balance_nanos == 1_000_000_000 - sum(r.cost_nanos for r in recorded)


def test_without_the_journal_no_answer_is_served_unbilled(app_on: Any) -> None:
    with app_on(journal=False) as (base_url, secret, platform):
        outcomes = _run_through_outage(base_url, secret, platform)
        for o in outcomes:
            assert not o.served, o  # the normal end never went out
            if o.stream:
                assert o.status == 200 and o.error is not None, o  # the family's in-stream error instead
            else:
                assert o.status == 503, o
                payload, headers = o.error
                kind = payload["error"]["type"]
                assert kind == ("api_error" if o.path == "/v1/messages" else "server_error"), payload
                assert int(headers["retry-after"]) >= 1
        # the store is back: the refused requests' holds are released by the maintenance thread
        _wait(lambda: _states(platform).get("active", 0) == 0 and platform.store_status()["releases_pending"] == 0)
        assert _states(platform).get("released") == len(outcomes)
        recorded = platform.list_usage(account="paying")
        assert {r.request_id for r in recorded}.isdisjoint(o.request_id for o in outcomes)  # nothing charged
        assert len(recorded) == len(CALLS)  # the warm-up requests only
        balance = platform.get_account("paying").balance_nanos
        assert balance == 1_000_000_000 - sum(r.cost_nanos for r in recorded) == platform.ledger_sum("paying")
        # and the server serves again
        again = _call(base_url, secret, *CALLS[0], stream=False)
        assert again.served and platform.get_usage(str(again.request_id)) is not None


def test_a_dead_process_journal_is_replayed_at_the_next_start(store_url: str, tmp_path: Path) -> None:
    """Records journaled by a server that then died reach the store when the next server starts on the host."""
    journal_dir = tmp_path / "journal"
    first = Platform.open(database_url=store_url, journal_dir=journal_dir, lock_timeout_s=0.3)
    _, secret = first.create_key("k")
    key = first.authenticate(secret)
    assert key is not None
    first.start_instance(background=False)
    admission = first.admit(key, "chat.completions", MODEL, 10, 10)
    with store_locked(first):
        record = first.record_usage("req_journaled", admission, "chat.completions", MODEL, 10, 0, 7)
    assert record.cost_nanos > 0 and first.get_usage("req_journaled") is None
    # the process dies with its journal on disk: simulate by dropping the platform without closing it
    assert first.journal is not None
    fd = first.journal._fd
    first.journal = None
    first._engine.dispose()
    import os

    assert fd is not None
    os.close(fd)  # its flock goes with it, as with a killed process
    with Platform.open(database_url=store_url, journal_dir=journal_dir) as second:
        second.start_instance(background=False)
        assert second.get_usage("req_journaled") == record.__class__(**{**record.__dict__,
                                                                         "created_at": record.created_at})
        assert _states(second).get("settled") == 1
        assert not list(journal_dir.glob("*.jsonl")) or all(p.stat().st_size == 0 for p in journal_dir.glob("*"))
