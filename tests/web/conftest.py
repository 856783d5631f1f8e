"""Fixtures for the browser UI tests: a real `qwen35 serve` process on the tiny checkpoint (port 0, its own store),
and a headless Debian Chromium driven by Playwright (never a downloaded browser).

Browser tests skip with a reason when chromium or playwright is missing; `.ci/run` installs both.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_harness import SECRET, Page, Server, start_serve


@pytest.fixture(scope="session")
def web_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for all browser tests, started on an empty store: its first start prints an admin key."""
    data_dir = tmp_path_factory.mktemp("web-store")
    served = start_serve(tiny_checkpoint, data_dir)
    try:
        secret = SECRET.search(served.wait_for(re.compile(r"#key=sk-q35-"), 10).string)
        assert secret is not None
        yield Server(served.base_url, secret.group(0), served.output(), served.started_s, data_dir)
    finally:
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
    tab.on("console", lambda m: wrapped.console.append(f"{m.type}: {m.text}"))
    tab.on("pageerror", lambda e: wrapped.console.append(f"pageerror: {e}"))
    tab.set_default_timeout(30_000)
    yield wrapped
    context.close()
    assert not [m for m in wrapped.console if m.startswith("pageerror")], wrapped.console
    assert not wrapped.csp_violations(), wrapped.csp_violations()
