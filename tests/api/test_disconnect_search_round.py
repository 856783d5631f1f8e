"""A client that hangs up while the server runs a web search round (real engine on the tiny checkpoint, fake Linkup
answering slowly): the request is settled once as cancelled, the search it started does not run on into more
rounds, and the engine holds nothing afterwards."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fake_linkup import Reply
from scripted_app import wait_for_usage
from web_search_app import SearchApp, running_search_app

MODEL = "qwen3-5-4b"


@pytest.fixture(scope="module")
def app(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchApp]:
    with running_search_app(tiny_checkpoint, tmp_path_factory.mktemp("ws-disconnect"), max_uses=3) as running:
        yield running


def test_disconnect_during_a_search_round(app: SearchApp) -> None:
    app.fake.script(Reply(delay_s=0.8), Reply(delay_s=0.8), Reply(delay_s=0.8))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Weather in Paris?"}], "stream": True,
            "web_search_options": {}, "tool_choice": {"type": "function", "function": {"name": "web_search"}},
            "max_completion_tokens": 500, "temperature": 0.0, "enable_thinking": False}
    request_id = ""
    with httpx.stream("POST", f"{app.base_url}/v1/chat/completions", json=body, timeout=60,
                      headers={"authorization": f"Bearer {app.secret}"}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # not a for-loop: leaving one would close the response (a disconnect)
        while not request_id:
            line = next(lines)
            if line.startswith("data: "):
                request_id = json.loads(line[6:])["id"]
        deadline = time.monotonic() + 30
        while not app.fake.received and time.monotonic() < deadline:  # the first search is in flight
            time.sleep(0.02)
        assert app.fake.received
    # hung up mid-search
    record = wait_for_usage(app.platform, request_id)
    assert record.status == "cancelled"
    time.sleep(2.0)  # a round that kept going would have searched again by now
    assert len(app.fake.received) == 1
    assert record.web_search_calls <= 1
    engine = app.core.engine
    stats = engine.stats()
    assert stats.running == 0 and stats.waiting == 0 and stats.kv_blocks_used == 0
