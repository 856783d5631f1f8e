"""Store health as this process last saw it: did its latest write reach the store, and what is still owed to it.

Owns `StoreHealth` (mixed into Platform): every metering write and every heartbeat reports its outcome here, so
`/health` answers from memory (no query, no wait on a locked store) and says 503 while the store refuses writes.
Imports nothing from qwen35 outside the platform.
Invariant: `ok` is the outcome of the newest write attempt, and false as well while a write has been waiting for
more than STUCK_WRITE_S (a locked store is reported before its lock timeout ends the write); a server that
heartbeats (qwen35 serve) attempts a write at least every heartbeat interval, so a store that locked up or came
back is reported within that interval (+ STUCK_WRITE_S).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, text

from qwen35.platform.errors import StoreUnavailable
from qwen35.platform.store import oldest_write_age_s, read_tx

STUCK_WRITE_S = 5.0  # a write running this long is waiting on a lock held elsewhere


class StoreHealth:
    _engine: Engine

    def __init__(self) -> None:
        self._health_lock = threading.Lock()
        self._store_error: str | None = None
        self._store_error_since: float | None = None
        self._last_write_ok: float | None = None

    def _store_ok(self) -> None:
        with self._health_lock:
            self._store_error = None
            self._store_error_since = None
            self._last_write_ok = time.time()

    def _store_failed(self, exc: BaseException) -> None:
        with self._health_lock:
            self._store_error = str(exc)[:500]
            if self._store_error_since is None:
                self._store_error_since = time.time()

    def _pending_counts(self) -> dict[str, int]:
        return {}

    def store_status(self) -> dict[str, Any]:
        """`{"ok", "error", "unavailable_since", "last_write_ok", ...pending counts}` (from memory)."""
        stuck = oldest_write_age_s(self._engine)
        with self._health_lock:
            status: dict[str, Any] = {
                "ok": self._store_error is None,
                "error": self._store_error,
                "unavailable_since": self._store_error_since,
                "last_write_ok": self._last_write_ok,
            }
        if status["ok"] and stuck is not None and stuck > STUCK_WRITE_S:
            status.update(ok=False, error=f"a store write has waited {stuck:.0f} s (the store is locked or stalled)",
                          unavailable_since=time.time() - stuck)
        status.update(self._pending_counts())
        return status

    def check_store(self) -> None:
        """Readiness probe: raises StoreUnavailable when this process's newest write was refused (a locked or
        read-only store still answers reads) or a read fails now."""
        status = self.store_status()
        if not status["ok"]:
            raise StoreUnavailable(f"the store refuses writes: {status['error']}")
        with read_tx(self._engine) as conn:
            conn.execute(text("SELECT 1"))
