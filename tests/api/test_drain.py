"""SIGTERM drains a real `qwen35 serve`: the running stream finishes, new generations get a retryable 503 in their
family's format, /ready turns 503 while /health and reads still answer, then the process exits 0 by itself."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx

from serve_process import Serve

MODEL = "qwen3-5-4b"


def _secret(lines: list[str]) -> str:
    for line in lines:
        if line.strip().startswith("sk-"):
            return line.strip()
    raise AssertionError("no first-run key printed:\n" + "".join(lines))


def test_sigterm_drains_running_streams_and_refuses_new_work(tiny_checkpoint: Path,
                                                             tmp_path: Path) -> None:
    server = Serve(tiny_checkpoint, tmp_path / "store", "--drain-timeout", "60", "--log-format", "json")
    try:
        secret = _secret(server.lines)
        headers = {"authorization": f"Bearer {secret}", "anthropic-version": "2023-06-01", "x-api-key": secret}
        body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 200,
                "min_tokens": 200, "stream": True, "reasoning_effort": "none"}
        chunks: list[str] = []
        first = threading.Event()

        def stream() -> None:
            with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, headers=headers,
                              timeout=120) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        chunks.append(line[6:])
                        first.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.wait(60)
        server.signal(signal.SIGTERM)
        time.sleep(0.5)
        refused = httpx.post(f"{server.base_url}/v1/chat/completions", headers=headers, timeout=30,
                             json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "draining"
        refused = httpx.post(f"{server.base_url}/v1/messages", headers=headers, timeout=30,
                             json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
        assert refused.status_code == 503 and refused.json()["type"] == "error" and refused.headers["retry-after"]
        assert httpx.get(f"{server.base_url}/ready", timeout=30).status_code == 503
        assert httpx.get(f"{server.base_url}/health", timeout=30).status_code == 200
        assert httpx.get(f"{server.base_url}/v1/models", headers=headers, timeout=30).status_code == 200
        reader.join(120)
        assert chunks[-1] == "[DONE]"  # the running stream ran to its end
        finals = [json.loads(c) for c in chunks[:-1] if json.loads(c)["choices"]]
        assert finals[-1]["choices"][0]["finish_reason"] == "length"
        assert server.wait(60) == 0  # drained: it stops by itself, cleanly
        logged = [json.loads(line) for line in server.lines if line.startswith("{")]
        assert any("draining" in entry["msg"] for entry in logged)  # --log-format json: JSON lines
    finally:
        server.stop()
