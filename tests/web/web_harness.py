"""Helpers of the browser UI tests: start a real `qwen35 serve` process (port 0, its own store) and read what it
prints, the Server and Page values that this folder's conftest fixtures hand out, and where screenshots go."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY = re.compile(r"^qwen35: ready at (http://\S+?)/ ")
SECRET = re.compile(r"sk-q35-[0-9a-f]{12}[A-Za-z0-9_-]{43}")
DOCS = Path(__file__).resolve().parents[2] / "docs"


@dataclass
class ServeProcess:
    """A `qwen35 serve` child process and everything it printed."""

    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    base_url: str = ""
    started_s: float = 0.0

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"`qwen35 serve` did not print {pattern.pattern!r}; output:\n{self.output()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_serve(checkpoint: Path, data_dir: Path, timeout: float = 120.0) -> ServeProcess:
    """Start `qwen35 serve --model CHECKPOINT --port 0` and return once it printed its ready line."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "qwen35.cli", "serve", "--model", str(checkpoint), "--host", "127.0.0.1",
           "--port", "0", "--data-dir", str(data_dir), "--kv-cache-gb", "0.1", "--log-level", "warning"]
    began = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    served = ServeProcess(proc)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            served.lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        served.base_url = served.wait_for(READY, timeout).group(1)
    except BaseException:
        served.stop()
        raise
    served.started_s = time.monotonic() - began
    return served


@dataclass
class Server:
    base_url: str
    secret: str
    first_output: str
    started_s: float
    data_dir: Path


@dataclass
class Page:
    page: Any
    console: list[str]

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """docs/NAME when QWEN35_UPDATE_SCREENSHOTS=1 (the committed README images), else a temp file."""
    if os.environ.get("QWEN35_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS / name
    return tmp_path / name
