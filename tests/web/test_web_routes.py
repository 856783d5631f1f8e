"""The web UI's HTTP side without a browser: pages and assets with a strict CSP, no path escapes, the public
capabilities the playground builds its form from, the first-run admin key and the usage series of the dashboard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qwen35.api.web.routes import STATIC_DIR
from qwen35.api.web.startup import announcement, first_run_key
from qwen35.platform import Platform
from qwen35.serving.sampling import PARAMETERS
from scripted_app import AppHarness, running_app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    with running_app(tmp_path_factory.mktemp("web-routes")) as harness:
        yield harness


@pytest.mark.parametrize("path", ["/", "/playground", "/dashboard"])
def test_pages_have_a_strict_csp_and_no_inline_code(app: AppHarness, path: str) -> None:
    r = httpx.get(app.base_url + path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    # every script is a module from this origin; no inline script, handler or style attribute
    assert re.findall(r"<script(?![^>]*\bsrc=\"/static/)", r.text) == []
    assert not re.search(r"\son[a-z]+=|\sstyle=|<style", r.text)


def test_static_assets_are_served_with_types_and_never_escape_the_folder(app: AppHarness) -> None:
    js = httpx.get(app.base_url + "/static/playground.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert httpx.get(app.base_url + "/static/vendor/purify.es.mjs").headers["content-type"].startswith("text/javascript")
    assert httpx.get(app.base_url + "/static/vendor/katex/fonts/KaTeX_Main-Regular.woff2").headers["content-type"] == "font/woff2"
    for bad in ("/static/../routes.py", "/static/%2e%2e/routes.py", "/static/nope.js", "/static/vendor"):
        assert httpx.get(app.base_url + bad).status_code == 404, bad


def test_every_module_import_resolves_to_a_shipped_file() -> None:
    """The pages load without a bundler: each relative ES-module import names a file in static/."""
    for module in STATIC_DIR.glob("*.js"):
        for target in re.findall(r"""(?:from|import\()\s*["'](\./[^"']+)["']""", module.read_text()):
            assert (STATIC_DIR / target).is_file(), (module.name, target)
    licenses = {p.name for p in (STATIC_DIR / "vendor" / "licenses").iterdir()}
    assert {"marked-LICENSE.md", "dompurify-LICENSE", "highlightjs-LICENSE", "katex-LICENSE"} <= licenses


def test_capabilities_are_public_and_come_from_the_one_parameter_table(app: AppHarness) -> None:
    caps = httpx.get(app.base_url + "/v1/capabilities").json()
    assert caps["model"] == "qwen3-5-4b"
    for name, limit in PARAMETERS.items():
        assert caps["parameters"][name] == {"default": limit.default, "min": limit.low, "max": limit.high,
                                            "integer": limit.integer}
    assert caps["parameters"]["temperature"]["default"] == 0.7 and caps["parameters"]["top_k"]["max"] == 200
    assert caps["reasoning_efforts"]["max"] == 32768 and caps["max_stop"] == 4
    assert caps["media"] == {"image": False, "video": False, "reason": caps["media"]["reason"]}
    assert "does not accept images or video" in caps["media"]["reason"]


def test_media_flag_follows_the_serving_core(app: AppHarness) -> None:
    core = app.app.state.core
    core.accepts_media = {"image": True, "video": False}
    try:
        media = httpx.get(app.base_url + "/v1/capabilities").json()["media"]
    finally:
        del core.accepts_media
    assert media == {"image": True, "video": False, "reason": None}


def test_first_run_key_is_made_once_and_is_an_admin_key(tmp_path: Path) -> None:
    with Platform.open(data_dir=tmp_path) as platform:
        secret = first_run_key(platform)
        assert secret is not None
        key = platform.authenticate(secret)
        assert key is not None and key.is_admin and key.account_id == "default"
        assert first_run_key(platform) is None
        assert len(platform.list_keys()) == 1
    text = announcement("http://127.0.0.1:8000", secret)
    assert f"http://127.0.0.1:8000/#key={secret}" in text and text.count(secret) == 2
    assert "sk-q35-" not in announcement("http://127.0.0.1:8000", None)


def test_no_first_run_key_on_a_store_that_has_keys(tmp_path: Path) -> None:
    with Platform.open(data_dir=tmp_path) as platform:
        platform.create_key("made by `qwen35 keys create`")
        assert first_run_key(platform) is None


def test_usage_series_buckets_sum_the_ledger(app: AppHarness) -> None:
    platform = app.platform
    for i in range(3):
        platform.record_usage(f"req_series_{i}", app.key, "chat.completions", "qwen3-5-4b", input_tokens=10 + i,
                              cached_input_tokens=i, output_tokens=5)
    auth = {"Authorization": f"Bearer {app.secret}"}
    hours = httpx.get(app.base_url + "/v1/dashboard/usage/series", params={"bucket": "hour"}, headers=auth).json()
    assert hours["bucket_seconds"] == 3600 and len(hours["data"]) == 24
    assert all(row["start"] % 3600 == 0 for row in hours["data"])
    assert [row["start"] for row in hours["data"]] == sorted(row["start"] for row in hours["data"])
    def total(rows: list[dict], name: str) -> float:  # summed: the records may straddle an hour boundary
        return sum(float(row[name]) for row in rows)

    assert [total(hours["data"], n) for n in ("requests", "input_tokens", "cached_input_tokens", "output_tokens")] == [
        3, 33, 3, 15]
    records = platform.list_usage(key_id=app.key.key_id)
    assert sum(float(r.cost) for r in records) == pytest.approx(total(hours["data"], "cost_usd"))
    days = httpx.get(app.base_url + "/v1/dashboard/usage/series", params={"bucket": "day", "buckets": 7,
                     "key_id": app.key.key_id}, headers=auth).json()
    assert len(days["data"]) == 7 and total(days["data"], "requests") == 3 and days["data"][-1]["start"] % 86400 == 0
    other = httpx.get(app.base_url + "/v1/dashboard/usage/series", params={"key_id": "key_000000000000"}, headers=auth)
    assert total(other.json()["data"], "requests") == 0
    assert httpx.get(app.base_url + "/v1/dashboard/usage/series", params={"bucket": "week"},
                     headers=auth).status_code == 400
    assert httpx.get(app.base_url + "/v1/dashboard/usage/series").status_code == 401
