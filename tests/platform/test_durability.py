"""kill -9 during a burst: every request acknowledged after record_usage has its ledger record afterwards.

A child process plays a server: 4 threads admit + record usage in a loop and print `ACK <request_id>` only after
record_usage returned (the API layer likewise finishes a response only after recording it). The parent SIGKILLs
the child mid-burst, reopens the store and checks: no acknowledged request lacks its usage record, the balance
equals the sum of the ledger, and no balance went below zero.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from sqlalchemy import text

from qwen35.platform import Platform

CHILD = r"""
import sys, threading
from qwen35.platform import InsufficientCredits, Platform
platform = Platform.open(database_url=sys.argv[1])
key = platform.authenticate(sys.argv[2])
lock = threading.Lock()

def worker(worker_id):
    i = 0
    while True:
        i += 1
        request_id = f"w{worker_id}-{i}"
        try:
            adm = platform.admit(key, "chat.completions", "qwen3-5-4b", 500, 200)
        except InsufficientCredits:
            continue
        platform.record_usage(request_id, adm, "chat.completions", "qwen3-5-4b", 500, 100, 150, 20)
        with lock:
            print("ACK", request_id, flush=True)

for n in range(4):
    threading.Thread(target=worker, args=(n,), daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
"""


def test_kill_9_mid_burst_keeps_every_acknowledged_record(store_url: str) -> None:
    with Platform.open(database_url=store_url) as p:
        p.create_account("burst")
        p.add_credits("burst", "0.05")  # ~1,000 requests' worth: the balance is live during the burst
        _, secret = p.create_key("k", account="burst")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, store_url, secret], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    acked: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("ACK "):
                acked.append(line.split()[1])
                if len(acked) >= 60:
                    break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        _, err = child.communicate(timeout=60)
    assert len(acked) >= 60, err
    assert child.returncode == -signal.SIGKILL
    with Platform.open(database_url=store_url) as p:
        missing = [r for r in acked if p.get_usage(r) is None]
        assert missing == []
        account = p.get_account("burst")
        assert account.balance_nanos == p.ledger_sum("burst") >= 0
        recorded = p.list_usage(account="burst", limit=10_000)
        assert len(recorded) >= len(acked)
        assert account.balance_nanos == 50_000_000 - sum(r.cost_nanos for r in recorded)
        if p.engine.dialect.name == "sqlite":
            with p.engine.connect() as conn:
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
