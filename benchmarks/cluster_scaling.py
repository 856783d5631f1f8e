"""Throughput of 1 -> 2 engine replicas on Ray Serve against one in-process engine, same machine, same run.

Starts each server configuration in turn on 127.0.0.1 (tiny checkpoint by default; `--model` / `--dummy-weights`
for others), runs `qwen35 bench serve` against it (streamed chat, ignore_eos, thinking off), stops it, and prints
one Markdown table: output tok/s, request/s, TTFT and TPOT medians, and each configuration's ratio to the
in-process baseline. Usage:

    python benchmarks/cluster_scaling.py --model /path/to/tiny --num-prompts 96 --max-concurrency 16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

READY = re.compile(r"qwen35: ready at (http://\S+?)/ ")
KEY = re.compile(r"^\s+(sk-q35-\S+)$", re.M)
CONFIGS = {
    "in-process (no Ray), 2 threads": [],
    "Ray Serve, 1 replica x 2 threads": ["--replicas", "1", "--replica-threads", "2"],
    "Ray Serve, 2 replicas x 1 thread": ["--replicas", "2", "--replica-threads", "1"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(model_flags: list[str], extra: list[str], data_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "qwen35.cli", "serve", *model_flags, "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        text = "".join(lines)
        ready, key = READY.search(text), KEY.search(text)
        if ready and key:
            return proc, ready.group(1), key.group(1)
        time.sleep(0.2)
    stop(proc)
    raise SystemExit("server did not start:\n" + "".join(lines)[-3000:])


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dummy-weights", action="store_true")
    p.add_argument("--engine-flags", default="--kv-cache-gb 0.5 --max-model-len 4096",
                   help="engine flags for every configuration")
    p.add_argument("--num-prompts", type=int, default=96)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--max-concurrency", type=int, default=16)
    p.add_argument("--only", default=None, help="comma-separated config numbers (1-based)")
    args = p.parse_args()
    model_flags = ["--model", args.model, *(["--dummy-weights"] if args.dummy_weights else []),
                   *args.engine_flags.split()]
    chosen = list(CONFIGS.items())
    if args.only:
        chosen = [chosen[int(i) - 1] for i in args.only.split(",")]
    rows = []
    for name, extra in chosen:
        with tempfile.TemporaryDirectory() as tmp:
            proc, base, key = start(model_flags, extra, Path(tmp))
            try:
                out = Path(tmp) / "result.json"
                subprocess.run([sys.executable, "-m", "qwen35.cli", "bench", "serve", "--base-url", base,
                                "--api-key", key, "--tokenizer", args.model, "--num-prompts", str(args.num_prompts),
                                "--input-len", str(args.input_len), "--output-len", str(args.output_len),
                                "--max-concurrency", str(args.max_concurrency), "--disable-tqdm", "--out", str(out)],
                               check=True, stdout=subprocess.DEVNULL)
                rows.append((name, json.loads(out.read_text())))
            finally:
                stop(proc)
    base_tps = rows[0][1]["output_throughput"]
    first = rows[0][1]
    print(f"{first['date']}, commit {first['commit']}, {first['machine']}; {args.num_prompts} streamed chat requests, "
          f"{args.input_len} in / {args.output_len} out, max concurrency {args.max_concurrency}\n")
    print("| configuration | output tok/s | req/s | TTFT median ms | TPOT median ms | vs first row | failed | load before |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, r in rows:
        print(f"| {name} | {r['output_throughput']:.1f} | {r['request_throughput']:.2f} | "
              f"{r['ttft']['median']:.0f} | {r['tpot']['median']:.1f} | "
              f"{r['output_throughput'] / base_tps:.2f}x | {r['failed']} | {r['load_before']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
