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

import httpx

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


def launch_serve(checkpoint: Path, data_dir: Path) -> ServeProcess:
    """Start `qwen35 serve --model CHECKPOINT --port 0` without waiting (see `ServeProcess.ready`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "qwen35.cli", "serve", "--model", str(checkpoint), "--host", "127.0.0.1",
           "--port", "0", "--data-dir", str(data_dir), "--kv-cache-gb", "0.1", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    served = ServeProcess(proc, started_s=time.monotonic())

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            served.lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return served


def ready(served: ServeProcess, timeout: float = 120.0) -> ServeProcess:
    """Wait for the ready line (its URL becomes `base_url`, the seconds since launch `started_s`)."""
    try:
        served.base_url = served.wait_for(READY, timeout).group(1)
    except BaseException:
        served.stop()
        raise
    served.started_s = time.monotonic() - served.started_s
    # the announcement is one flushed write: give the pump thread the lines after the ready line
    time.sleep(0.2)
    return served


def start_serve(checkpoint: Path, data_dir: Path, timeout: float = 120.0) -> ServeProcess:
    """Start `qwen35 serve` and return once it printed its ready line."""
    return ready(launch_serve(checkpoint, data_dir), timeout)


@dataclass
class Server:
    base_url: str
    secret: str
    first_output: str
    started_s: float
    data_dir: Path
    twin_output: str  # what a second server, started at the same moment on the same empty store, printed


@dataclass
class Page:
    page: Any
    console: list[str]

    def csp_violations(self) -> list[str]:
        # Chromium reports the handlers of HTML that DOMPurify parses (DOMParser documents inherit the page's CSP)
        # and blocks them; that report is the CSP doing its job on text DOMPurify then cleans, not a page bug.
        return [m for m in self.console
                if ("Content Security Policy" in m or "Refused to" in m) and "vendor/purify.es.mjs" not in m]


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """docs/NAME when QWEN35_UPDATE_SCREENSHOTS=1 (the committed README images), else a temp file."""
    if os.environ.get("QWEN35_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS / name
    return tmp_path / name


def sign_in(page: Page, server: Server) -> None:
    tab = page.page
    tab.goto(server.base_url + "/")
    key_input = tab.locator("#api-key")
    assert key_input.get_attribute("type") == "password"
    key_input.fill("sk-q35-000000000000" + "x" * 43)
    tab.get_by_role("button", name="Sign in").click()
    tab.get_by_role("alert").filter(has_text="not valid").wait_for()
    key_input.fill(server.secret)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_selector("body[data-ready=true]")


def send(page: Page, text: str) -> dict:
    """Type and send a message; returns the JSON body of the request the browser sent."""
    tab = page.page
    tab.fill("#prompt", text)
    with tab.expect_request(lambda r: r.method == "POST" and "/v1/" in r.url) as request:
        tab.locator("#prompt").press("Enter")  # Enter sends (Shift+Enter adds a line)
    return {"url": request.value.url, "body": request.value.post_data_json}


def last_answer(page: Page, state: str = "done"):
    """The newest turn, once it is an assistant turn in `state` (streaming, done, stopped, error)."""
    node = page.page.locator(f"#messages > article.assistant:last-child[data-state={state}]")
    node.wait_for()
    return node


def usage_records(server: Server, limit: int = 5) -> list[dict]:
    response = httpx.get(f"{server.base_url}/v1/dashboard/usage", params={"limit": limit},
                         headers={"Authorization": f"Bearer {server.secret}"})
    response.raise_for_status()
    return response.json()["data"]
