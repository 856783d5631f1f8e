"""End-to-end: the playground's web search switch in headless Chromium against a real `qwen35 serve` whose Linkup
key and base URL (env LINKUP_API_KEY / LINKUP_BASE_URL) point at a local fake Linkup. The search is forced with
tool choice "required" (random weights never search on their own); the page shows each search with its sources
and the usage line counts them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_harness import SECRET, Page, Server, launch_serve, ready, send, sign_in

from fake_linkup import FAKE_KEY, fake_linkup
from qwen35.serving.web_search import MAX_QUERY_CHARS


@pytest.fixture(scope="module")
def search_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with fake_linkup() as fake:
        saved = {k: os.environ.get(k) for k in ("LINKUP_API_KEY", "LINKUP_BASE_URL")}
        os.environ.update(LINKUP_API_KEY=FAKE_KEY, LINKUP_BASE_URL=fake.base_url)
        try:
            served = launch_serve(tiny_checkpoint, tmp_path_factory.mktemp("web-search-store"))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            ready(served)
            secret = SECRET.search(served.output())
            assert secret is not None
            yield Server(served.base_url, secret.group(0), served.output(), served.started_s, Path("."), "")
        finally:
            served.stop()
            assert FAKE_KEY not in served.output()


@pytest.mark.parametrize("api", ["responses", "messages", "chat.completions"])
def test_searches_and_sources_are_shown(page: Page, search_server: Server, api: str) -> None:
    sign_in(page, search_server)
    tab = page.page
    tab.select_option("#api", api)
    tab.select_option("#reasoning", "none")
    # room for one whole forced call whatever random weights emit: a query of up to MAX_QUERY_CHARS characters
    # (4 UTF-8 bytes each, one byte-level token per byte at worst) plus the call's markup
    tab.fill("#max_tokens", str(4 * MAX_QUERY_CHARS + 200))
    tab.check("#web_search")
    tab.select_option("#tool_choice", "required")
    sent = send(page, "Weather in Paris?")["body"]
    if api == "responses":
        assert {"type": "web_search"} in sent["tools"] and "web_search_call.action.sources" in sent["include"]
    elif api == "messages":
        assert {"type": "web_search_20250305", "name": "web_search"} in sent["tools"]
    else:
        assert sent["web_search_options"] == {}
    # several model calls (one per search round) on a shared CPU: more than the default 30 s wait
    answer = page.page.locator("#messages > article.assistant:last-child[data-state=done]")
    answer.wait_for(timeout=240_000)
    usage = answer.locator(".usage").inner_text()
    assert "searches " in usage and "searches 0" not in usage
    if api != "chat.completions":  # Chat Completions has no search items: the searches show in the usage only
        searches = answer.locator(".searches .search")
        assert searches.count() >= 1
        first = searches.first
        assert "Web search:" in first.inner_text() and "completed" in first.inner_text()
        assert first.locator("a[href='https://weather.example.com/paris']").count() == 1
        assert first.locator("a").first.get_attribute("rel") == "noopener noreferrer"
