"""A real `qwen35 serve` in a child process on 127.0.0.1 (port 0), for tests of signals, restarts and exits.

`Serve(checkpoint, data_dir, *extra_args)` starts it (in its own session, so `kill9()` takes the whole process
group) and waits for its "ready at" line; `.base_url`, `.lines` (its output so far), `.signal(sig)`, `.wait(timeout)`
(the exit code), `.kill9()` and `.stop()` (SIGTERM, then SIGKILL after 20 s)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

READY = re.compile(r"^qwen35: ready at (http://\S+?)/ ")


class Serve:
    def __init__(self, checkpoint: Path, data_dir: Path, *extra: str, timeout_s: float = 180) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "qwen35.cli", "serve", "--model", str(checkpoint), "--host", "127.0.0.1",
               "--port", "0", "--data-dir", str(data_dir), "--kv-cache-gb", "0.1", "--max-model-len", "4096",
               "--log-level", "warning", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.base_url = self._wait_ready(timeout_s)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            for line in list(self.lines):
                match = READY.search(line)
                if match:
                    return match.group(1)
            time.sleep(0.05)
        self.stop()
        raise AssertionError("qwen35 serve did not start:\n" + "".join(self.lines)[-4000:])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()
