"""Load check: many concurrent streaming clients against a real `qwen35 serve` (tiny checkpoint) for minutes.

Reports, with date, commit and machine: requests done, their status codes (queue overflow answers 429 / 529 with
retry-after), TTFT and end-to-end p50 / p99, output tok/s, and the server's resources before and after the load
(RSS, open file descriptors, SQLite file handles, KV blocks and DeltaNet state slots in use, requests in flight),
"before" taken after a warm-up round of the same load (the store's connection pool and the allocator fill up
then): nothing may grow over the measured round. Exits 1 when something leaked, a 5xx came back, or an overflow answer had no
retry-after.

    python benchmarks/load.py [--concurrency 200] [--duration 120] [--max-waiting 64] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_process import Serve  # noqa: E402
from tiny_checkpoint import write_tiny_checkpoint  # noqa: E402

MODEL = "qwen3-5-4b"
GAUGES = ("qwen35_kv_blocks_used", "qwen35_state_slots_used", "qwen35_running_sequences", "qwen35_queue_depth",
          "qwen35_requests_in_flight")


def resources(base_url: str, pid: int) -> dict[str, float]:
    """Server-side figures: /proc for the process, /metrics for the engine."""
    out: dict[str, float] = {}
    status = Path(f"/proc/{pid}/status").read_text()
    out["rss_mb"] = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    fds = list(Path(f"/proc/{pid}/fd").iterdir())
    out["fds"] = len(fds)
    targets = []
    for fd in fds:
        try:
            targets.append(os.readlink(fd))
        except OSError:
            pass
    out["db_handles"] = sum(1 for t in targets if ".db" in t or ".sqlite" in t)
    out["sockets"] = sum(1 for t in targets if t.startswith("socket:"))
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    for name in GAUGES:
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
        if match:
            out[name] = float(match.group(1))
    return out


async def client(base_url: str, secret: str, args: argparse.Namespace, deadline: float, index: int,
                 results: list[dict[str, Any]]) -> None:
    anthropic = index % 4 == 3  # a quarter over Anthropic Messages, the rest Chat Completions
    headers = {"authorization": f"Bearer {secret}", "x-api-key": secret, "anthropic-version": "2023-06-01"}
    messages = [{"role": "user", "content": f"Client {index}: say something."}]
    path = "/v1/messages" if anthropic else "/v1/chat/completions"
    body = {"model": MODEL, "messages": messages, "max_tokens": args.max_tokens, "stream": True,
            "temperature": 0.7, "seed": index}
    if not anthropic:
        body["min_tokens"] = args.max_tokens  # fixed output length: comparable latencies
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600) as http:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            ttft = None
            tokens = 0
            try:
                async with http.stream("POST", path, json=body) as response:
                    status = response.status_code
                    retry_after = response.headers.get("retry-after")
                    if status != 200:
                        await response.aread()
                    else:
                        async for line in response.aiter_lines():
                            if not line.startswith("data: ") or line == "data: [DONE]":
                                continue
                            if ttft is None:
                                ttft = time.monotonic() - t0
                            tokens += 1
            except httpx.HTTPError as exc:
                status, retry_after = -1, str(type(exc).__name__)
            results.append({"status": status, "retry_after": retry_after, "ttft": ttft,
                            "e2e": time.monotonic() - t0, "chunks": tokens})
            if status in (429, 529):
                await asyncio.sleep(float(retry_after or 1))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_load(base_url: str, secret: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.duration
    await asyncio.gather(*(client(base_url, secret, args, deadline, i, results) for i in range(args.concurrency)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--max-waiting", type=int, default=64, help="the server's admission bound")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="seconds of the same load before the 'before' figures (pools and caches fill up)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qwen35-load-"))
    checkpoint = write_tiny_checkpoint(work / "ckpt")
    server = Serve(checkpoint, work / "store", "--max-waiting", str(args.max_waiting), "--max-num-seqs", "16")
    try:
        secret = next(line.strip() for line in server.lines if line.strip().startswith("sk-"))
        warm = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=120,
                          headers={"authorization": f"Bearer {secret}"},
                          json={"model": MODEL, "messages": [{"role": "user", "content": "warm"}], "max_tokens": 4})
        warm.raise_for_status()
        if args.warmup > 0:
            asyncio.run(run_load(server.base_url, secret, argparse.Namespace(**{**vars(args),
                                                                                 "duration": args.warmup})))
            time.sleep(2.0)
        before = resources(server.base_url, server.proc.pid)
        t0 = time.monotonic()
        results = asyncio.run(run_load(server.base_url, secret, args))
        wall = time.monotonic() - t0
        time.sleep(2.0)  # let the last settlements land
        after = resources(server.base_url, server.proc.pid)
    finally:
        server.stop()
    ok = [r for r in results if r["status"] == 200]
    codes = Counter(r["status"] for r in results)
    overflow = [r for r in results if r["status"] in (429, 529)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "commit": commit,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
        "concurrency": args.concurrency, "duration_s": round(wall, 1), "max_waiting": args.max_waiting,
        "requests": len(results), "status_codes": dict(codes),
        "overflow_with_retry_after": sum(1 for r in overflow if r["retry_after"]), "overflow": len(overflow),
        "ttft_p50_s": round(pct([r["ttft"] for r in ok if r["ttft"] is not None], 0.5), 3),
        "ttft_p99_s": round(pct([r["ttft"] for r in ok if r["ttft"] is not None], 0.99), 3),
        "e2e_p50_s": round(pct([r["e2e"] for r in ok], 0.5), 3),
        "e2e_p99_s": round(pct([r["e2e"] for r in ok], 0.99), 3),
        "stream_chunks_per_s": round(sum(r["chunks"] for r in ok) / wall, 1),
        "before": before, "after": after,
    }
    print(json.dumps(report, indent=2))
    leaks = [k for k in ("kv_blocks_used", "state_slots_used", "running_sequences", "queue_depth", "requests_in_flight")
             if after.get(f"qwen35_{k}", 0) > before.get(f"qwen35_{k}", 0)]
    leaks += [k for k in ("fds", "db_handles") if after[k] > before[k] + 2]
    if after["rss_mb"] > before["rss_mb"] * 1.5 + 200:
        leaks.append("rss_mb")
    errors = [c for c in codes if c >= 500 and c != 529 or c == -1]
    bad_overflow = len(overflow) - report["overflow_with_retry_after"]
    print(f"leaks: {leaks or 'none'}; 5xx/transport errors: {errors or 'none'}; overflow without retry-after: "
          f"{bad_overflow}")
    return 1 if leaks or errors or bad_overflow else 0


if __name__ == "__main__":
    sys.exit(main())
