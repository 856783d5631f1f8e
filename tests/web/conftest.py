"""Fixtures for the browser UI tests: a real `qwen35 serve` process on the tiny checkpoint (port 0, its own store),
and a headless Debian Chromium driven by Playwright (never a downloaded browser).

Browser tests skip with a reason when chromium or playwright is missing; `.ci/run` installs both.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_harness import SECRET, Page, Server, launch_serve, ready


@pytest.fixture(scope="session")
def web_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for all browser tests, started on an empty store together with a twin on the same store: exactly
    one of the two creates and prints the admin key; the one that did serves the tests, the other is stopped."""
    data_dir = tmp_path_factory.mktemp("web-store")
    pair = [launch_serve(tiny_checkpoint, data_dir), launch_serve(tiny_checkpoint, data_dir)]
    try:
        for served in pair:
            ready(served)
        printed = [served for served in pair if "#key=sk-q35-" in served.output()]
        assert len(printed) == 1, [served.output()[-2000:] for served in pair]
        served, twin = printed[0], next(s for s in pair if s is not printed[0])
        twin.stop()
        secret = SECRET.search(served.output())
        assert secret is not None
        yield Server(served.base_url, secret.group(0), served.output(), served.started_s, data_dir, twin.output())
    finally:
        for served in pair:
            served.stop()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    executable = _chromium()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
        launched = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    """A fresh browser context (empty sessionStorage / localStorage) with console messages collected."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    wrapped = Page(tab, [])
    tab.on("console", lambda m: wrapped.console.append(f"{m.type}: {m.text} @ {m.location.get('url', '')}"))
    tab.on("pageerror", lambda e: wrapped.console.append(f"pageerror: {e}"))
    tab.set_default_timeout(30_000)
    yield wrapped
    context.close()
    assert not [m for m in wrapped.console if m.startswith("pageerror")], wrapped.console
    assert not wrapped.csp_violations(), wrapped.csp_violations()
