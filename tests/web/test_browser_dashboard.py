"""End-to-end: the dashboard in headless Chromium against the real `qwen35 serve` of the playground tests.

Covers signing in through the `#key=` URL that the first start prints, creating a key (secret shown once, working
at once), revoking it (refused at once), and the usage charts and balance moving after a request. Also checks that of two
servers started at once on one empty store only one makes and prints a key.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from web_harness import SECRET, Page, Server, screenshot_path


def open_dashboard(page: Page, server: Server) -> None:
    tab = page.page
    tab.goto(f"{server.base_url}/dashboard#key={server.secret}")
    tab.wait_for_selector("body[data-ready=true]")
    assert "#key" not in tab.url  # taken into sessionStorage and dropped from the address bar


def chat(server: Server, secret: str, max_tokens: int = 8) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                      json={"model": "qwen3-5-4b", "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": max_tokens}, timeout=60)


def test_create_key_shows_the_secret_once_and_revoke_stops_it(page: Page, web_server: Server) -> None:
    open_dashboard(page, web_server)
    tab = page.page
    tab.get_by_label("Name").fill("ci key")
    tab.get_by_label("Requests / min").fill("60")
    tab.get_by_role("button", name="Create key").click()
    secret = tab.locator("#new-secret-value").inner_text()
    assert SECRET.fullmatch(secret)
    row = tab.locator("#keys tbody tr", has_text="ci key")
    assert "60 / ∞ / ∞" in row.inner_text() and row.locator(".key-status").inner_text() == "active"
    assert chat(web_server, secret).status_code == 200
    tab.reload()
    tab.wait_for_selector("body[data-ready=true]")
    assert secret not in tab.content()  # shown once: the server keeps a hash only
    tab.once("dialog", lambda dialog: dialog.accept())
    tab.get_by_role("button", name="Revoke key ci key").click()
    tab.locator("#keys tbody tr.revoked", has_text="ci key").wait_for()
    refused = chat(web_server, secret)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


def test_usage_chart_and_balance_move_after_a_request(page: Page, web_server: Server, tmp_path: Path) -> None:
    open_dashboard(page, web_server)
    tab = page.page
    requests = tab.locator("#charts [data-series=requests]")
    before_requests = float(requests.get_attribute("data-total") or 0)
    before_balance = float(tab.locator("#balance-amount").get_attribute("data-usd") or 0)
    before_rows = tab.locator("#recent tbody tr").count()
    response = chat(web_server, web_server.secret, max_tokens=16)
    assert response.status_code == 200
    cost = response.json()["usage"]["cost"]
    assert cost > 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tab.get_by_role("button", name="Refresh").click()
        time.sleep(0.3)
        if float(requests.get_attribute("data-total") or 0) == before_requests + 1:
            break
    assert float(requests.get_attribute("data-total") or 0) == before_requests + 1
    after_balance = float(tab.locator("#balance-amount").get_attribute("data-usd") or 0)
    assert after_balance == before_balance - cost or abs(after_balance - (before_balance - cost)) < 1e-12
    assert tab.locator("#recent tbody tr").count() == min(before_rows + 1, 20)
    assert "chat.completions" in tab.locator("#recent tbody tr").first.inner_text()
    # per-key filter and day buckets ask the server again
    with tab.expect_response(re.compile(r"/v1/dashboard/usage/series\?bucket=day")):
        tab.get_by_label("Bucket").select_option("day")
    assert tab.locator("#charts svg[role=img]").count() == 3
    tab.screenshot(path=str(screenshot_path("dashboard.png", tmp_path)), full_page=True)


def test_admin_adds_credits_to_an_account(page: Page, web_server: Server) -> None:
    open_dashboard(page, web_server)
    tab = page.page
    tab.get_by_label("New account").fill("team-a")
    tab.get_by_role("button", name="Create account").click()
    row = tab.locator("#accounts tbody tr[data-account=team-a]")
    row.wait_for()
    tab.locator("#credit-account").select_option("team-a")
    tab.get_by_label("Amount (USD, negative removes)").fill("2.5")
    tab.get_by_role("button", name="Add credits").click()
    row.locator(".acct-balance", has_text="$2.5000").wait_for()


def test_only_the_first_start_on_a_store_prints_a_secret(web_server: Server) -> None:
    """Two servers started at once on one empty store: one made and printed the key; the other found a key and
    printed only its URLs (as every later start does). The twin ran to its ready line before it was stopped."""
    assert "qwen35: ready at http://127.0.0.1:" in web_server.twin_output
    assert "sk-q35-" not in web_server.twin_output and "#key=" not in web_server.twin_output
    response = httpx.get(f"{web_server.base_url}/v1/dashboard/keys", headers={"Authorization": f"Bearer {web_server.secret}"})
    assert [k["name"] for k in response.json()["data"]].count("admin (first run)") == 1
