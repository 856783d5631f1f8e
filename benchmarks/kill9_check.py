"""Durability check: kill -9 `qwen35 serve` during a burst of requests; every request a client saw complete must
have its ledger record.

Starts the server on a tiny random checkpoint (built with transformers, as the tests do) on 127.0.0.1, fires
concurrent chat completions (half streamed) from threads, SIGKILLs the server mid-burst, then opens the store and
checks each completed response id. Prints the counts; exits 1 on any completed request without a record.

    python benchmarks/kill9_check.py [--requests 40] [--kill-after 6]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from qwen35.platform import Platform  # noqa: E402
from tiny_checkpoint import write_tiny_checkpoint  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--kill-after", type=float, default=6.0, help="seconds after the first response")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qwen35-kill9-"))
    checkpoint = write_tiny_checkpoint(work / "ckpt")
    data = work / "data"
    platform = Platform.open(data_dir=data)
    _, secret = platform.create_key("kill9")
    platform.close()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "qwen35.cli", "serve", "--model", str(checkpoint), "--data-dir", str(data),
         "--port", str(port), "--max-model-len", "512"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0, timeout=60)
    for _ in range(600):
        try:
            client.models.list()
            break
        except openai.APIConnectionError:
            time.sleep(0.2)
    completed: list[str] = []
    failed = 0
    first_done = threading.Event()
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal failed
        kwargs = dict(model="qwen3-5-4b", messages=[{"role": "user", "content": f"Count to {i}."}],
                      max_tokens=20 + i % 40, temperature=0.7, reasoning_effort="none")
        try:
            if i % 2:
                chunks = list(client.chat.completions.create(stream=True, **kwargs))
                ok = bool(chunks) and chunks[-1].choices and chunks[-1].choices[0].finish_reason is not None
                response_id = chunks[-1].id if ok else None
            else:
                response_id = client.chat.completions.create(**kwargs).id
            if response_id:
                with lock:
                    completed.append(response_id)
                first_done.set()
        except Exception:  # noqa: BLE001 - the kill cuts requests off: those are expected failures
            with lock:
                failed += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.requests)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    first_done.wait(timeout=120)
    time.sleep(args.kill_after)
    os.killpg(server.pid, signal.SIGKILL)
    for t in threads:
        t.join(timeout=60)
    platform = Platform.open(data_dir=data)
    missing = [rid for rid in completed if platform.get_usage(rid) is None]
    records = len(platform.list_usage(limit=10_000))
    print(f"requests {args.requests}: completed before the kill {len(completed)}, cut off {failed}, "
          f"ledger records {records}, completed without a record {len(missing)}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
