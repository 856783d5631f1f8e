"""Per-request overhead of the platform: authenticate + admit + record_usage, p50/p99, on SQLite and PostgreSQL.

Usage:
    python benchmarks/platform_overhead.py [--requests 2000] [--threads 1,8] [--database-url postgresql://...]
Runs on a fresh temporary SQLite store (WAL, synchronous=NORMAL) and, when --database-url or
$QWEN35_TEST_POSTGRES_URL is given, on that PostgreSQL database in a throw-away schema. Prints one markdown table
with the date, commit and machine. Imports only qwen35.platform.
"""

from __future__ import annotations

import argparse
import os
import platform as host
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from qwen35.platform import KeyLimits, Platform
from qwen35.platform.store import resolve_url


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _run(platform: Platform, num_requests: int, num_threads: int) -> dict[str, list[float]]:
    account = "bench-" + secrets.token_hex(4)
    platform.create_account(account)
    platform.add_credits(account, "1000000")
    # Limits on, so the rate-limit window queries are part of what is measured.
    limits = KeyLimits(requests_per_minute=10**6, tokens_per_minute=2**31 - 1, max_concurrent=10**4)
    _, secret = platform.create_key("bench", account=account, limits=limits)
    times: dict[str, list[float]] = {"authenticate": [], "admit": [], "record_usage": [], "total": []}
    lock = threading.Lock()
    per_thread = num_requests // num_threads

    def worker(worker_id: int) -> None:
        local: dict[str, list[float]] = {k: [] for k in times}
        for i in range(per_thread):
            t0 = time.perf_counter()
            key = platform.authenticate(secret)
            assert key is not None
            t1 = time.perf_counter()
            adm = platform.admit(key, "chat.completions", "qwen3-5-4b", 1200, 800)
            t2 = time.perf_counter()
            platform.record_usage(f"{account}-{worker_id}-{i}", adm, "chat.completions", "qwen3-5-4b",
                                  1200, 600, 300, 120, 0, 1234, "completed")
            t3 = time.perf_counter()
            local["authenticate"].append(t1 - t0)
            local["admit"].append(t2 - t1)
            local["record_usage"].append(t3 - t2)
            local["total"].append(t3 - t0)
        with lock:
            for k, v in local.items():
                times[k].extend(v)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(num_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def _pg_schema(base: str) -> tuple[str, str]:
    url = resolve_url(None, base)
    schema = "bench_" + secrets.token_hex(4)
    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--database-url", default=os.environ.get("QWEN35_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    thread_counts = [int(x) for x in args.threads.split(",")]

    backends: list[tuple[str, str, str | None]] = []
    tmp = tempfile.TemporaryDirectory()
    backends.append(("sqlite", f"sqlite:///{tmp.name}/platform.sqlite3", None))
    if args.database_url:
        url, schema = _pg_schema(args.database_url)
        backends.append(("postgresql", url, schema))

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    print(f"platform overhead - {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, "
          f"{host.machine()} {os.cpu_count()} CPUs, {host.python_implementation()} {host.python_version()}")
    print()
    print("| backend | threads | requests | auth p50/p99 ms | admit p50/p99 ms | record p50/p99 ms "
          "| total p50/p99 ms | requests/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, url, schema in backends:
        with Platform.open(database_url=url) as platform:
            _run(platform, min(100, args.requests), 1)  # warm-up: pool, statement caches
            for n in thread_counts:
                started = time.perf_counter()
                times = _run(platform, args.requests, n)
                wall = time.perf_counter() - started
                cells = [f"{_percentile(times[k], 0.5) * 1e3:.2f} / {_percentile(times[k], 0.99) * 1e3:.2f}"
                         for k in ("authenticate", "admit", "record_usage", "total")]
                print(f"| {name} | {n} | {len(times['total'])} | " + " | ".join(cells)
                      + f" | {len(times['total']) / wall:.0f} |")
                assert statistics.fmean(times["total"]) > 0
        if schema is not None:
            with create_engine(resolve_url(None, args.database_url), isolation_level="AUTOCOMMIT").connect() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    tmp.cleanup()


if __name__ == "__main__":
    main()
