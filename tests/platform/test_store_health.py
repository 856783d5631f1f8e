"""Store health from memory: a locked store is reported while a write still waits for its lock (before the lock
timeout ends it), a refused write keeps it reported, and the next write that goes through clears it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from qwen35.platform import Platform, StoreUnavailable
from qwen35.platform.health import STUCK_WRITE_S

MODEL = "qwen3-5-4b"


def test_a_write_stuck_on_a_lock_makes_the_store_unhealthy_before_it_times_out(
    store_url: str, tmp_path: Path
) -> None:
    platform = Platform.open(database_url=store_url, lock_timeout_s=STUCK_WRITE_S + 3, journal_dir=tmp_path)
    try:
        key, _ = platform.create_key("k")
        assert platform.store_status()["ok"]
        if platform.engine.dialect.name == "sqlite":
            lock = sqlite3.connect(platform.url.partition(":///")[2], isolation_level=None, timeout=10)
            lock.execute("BEGIN EXCLUSIVE")
            release = lambda: (lock.execute("ROLLBACK"), lock.close())  # noqa: E731
        else:
            engine = create_engine(platform.engine.url)
            conn = engine.connect()
            conn.execute(text("LOCK TABLE accounts IN EXCLUSIVE MODE"))
            release = lambda: (conn.rollback(), conn.close(), engine.dispose())  # noqa: E731
        outcome: list[object] = []

        def admit() -> None:
            try:
                outcome.append(platform.admit(key, "chat.completions", MODEL, 1, 1))
            except StoreUnavailable as exc:
                outcome.append(exc)

        writer = threading.Thread(target=admit)
        started = time.monotonic()
        writer.start()
        try:
            while platform.store_status()["ok"]:
                assert time.monotonic() - started < STUCK_WRITE_S + 2.5, "a stuck write was not reported"
                time.sleep(0.1)
            assert STUCK_WRITE_S <= time.monotonic() - started and not outcome  # reported while still waiting
            assert "waited" in platform.store_status()["error"]
        finally:
            release()
        writer.join(timeout=30)
        assert outcome and not isinstance(outcome[0], StoreUnavailable)  # the lock went: the write went through
        assert platform.store_status()["ok"]
    finally:
        platform.close()
