"""End-to-end: the playground in headless Chromium against a real `qwen35 serve` on the tiny checkpoint.

Covers sign-in (password field, sessionStorage only), a streamed chat with thinking and answer apart, parameters
shown in "view code" equal to the body the browser sent and honoured by the server (max_tokens, seed, stop), the
API family switch, stopping mid-stream (the server records the partial request), and an image upload sent with the message.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from web_harness import Page, Server, last_answer, screenshot_path, send, sign_in, usage_records


def test_first_start_printed_the_key_and_urls(web_server: Server) -> None:
    out = web_server.first_output
    assert f"qwen35: ready at {web_server.base_url}/" in out
    assert f"{web_server.base_url}/#key={web_server.secret}" in out
    assert out.count(web_server.secret) == 2  # the key line and the sign-in URL, nothing else
    page = httpx.get(web_server.base_url + "/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]


def test_sign_in_and_streamed_chat_shows_thinking_apart(page: Page, web_server: Server, tmp_path: Path) -> None:
    sign_in(page, web_server)
    tab = page.page
    assert tab.evaluate("sessionStorage.getItem('qwen35.apiKey')") == web_server.secret
    tab.fill("#max_tokens", "64")
    sent = send(page, "Explain **markdown**, `code` and $e^{i\\pi} + 1 = 0$ briefly.")
    assert sent["url"].endswith("/v1/chat/completions")
    assert sent["body"]["stream"] is True and sent["body"]["max_tokens"] == 64
    answer = last_answer(page)
    thinking = answer.locator("details.thinking")
    # the tiny model thinks until the budget forces </think>: max_tokens 64 leaves the answer 32 tokens
    assert thinking.locator("summary").inner_text() == "Thinking · 32 tokens"
    assert thinking.locator(".think-text").text_content().strip()
    assert answer.locator(".body.answer").inner_text().strip()
    assert thinking.locator(".think-text").text_content() != answer.locator(".body.answer").inner_text()
    assert "out 64 (thinking 32)" in answer.locator(".usage").inner_text()
    assert "cost $" in answer.locator(".usage").inner_text()
    # the key lives in sessionStorage only; the conversation (and no key) in localStorage
    stored = json.dumps(tab.evaluate("Object.assign({}, localStorage)"))
    assert web_server.secret not in stored and "Explain **markdown**" in stored
    thinking.locator("summary").click()
    assert thinking.get_attribute("open") is not None
    tab.screenshot(path=str(screenshot_path("playground.png", tmp_path)))


def test_parameters_in_view_code_and_in_the_request(page: Page, web_server: Server) -> None:
    sign_in(page, web_server)
    tab = page.page
    for field, value in (("#temperature", "1.3"), ("#top_k", "5"), ("#seed", "7"), ("#max_tokens", "16"),
                         ("#repetition_penalty", "1.1")):
        tab.fill(field, value)
    tab.fill("#stop-seqs", "STOPHERE")
    tab.select_option("#reasoning", "none")
    tab.fill("#prompt", "Say something")
    tab.click("#view-code")
    code = tab.locator("#code-text").inner_text()
    for fragment in ('"temperature": 1.3', '"top_k": 5', '"seed": 7', '"max_tokens": 16', '"reasoning_effort": "none"',
                     '"stop": [', '"STOPHERE"', "/v1/chat/completions", "Authorization: Bearer $QWEN35_API_KEY"):
        assert fragment in code, (fragment, code)
    assert web_server.secret not in code
    tab.click("#tab-python")
    python = tab.locator("#code-text").inner_text()
    assert "temperature=1.3" in python and "seed=7" in python and '"top_k": 5' in python and "extra_body=" in python
    tab.click("#close-code")
    sent = send(page, "Say something")
    body = sent["body"]
    assert {k: body[k] for k in ("temperature", "top_k", "seed", "max_tokens", "repetition_penalty", "stop")} == {
        "temperature": 1.3, "top_k": 5, "seed": 7, "max_tokens": 16, "repetition_penalty": 1.1, "stop": ["STOPHERE"]}
    first = last_answer(page)
    # the server honoured them: thinking off (no thinking block), 16 tokens at most, and the seed reproduces
    assert first.locator("details.thinking").is_hidden()
    assert usage_records(web_server, 1)[0]["output_tokens"] <= 16
    text = first.locator(".body.answer").inner_text()
    first.get_by_role("button", name="Regenerate this answer").click()
    second = last_answer(page)
    assert second.locator(".body.answer").inner_text() == text
    # the same settings over Anthropic Messages: the family's own spelling in the body
    tab.select_option("#api", "messages")
    sent = send(page, "And now over Messages")
    assert sent["url"].endswith("/v1/messages")
    assert sent["body"]["stop_sequences"] == ["STOPHERE"] and sent["body"]["thinking"] == {"type": "disabled"}
    assert sent["body"]["max_tokens"] == 16 and sent["body"]["seed"] == 7
    assert "Anthropic Messages" in last_answer(page).inner_text()
    tab.select_option("#api", "responses")
    sent = send(page, "And over Responses")
    assert sent["url"].endswith("/v1/responses") and sent["body"]["max_output_tokens"] == 16
    assert sent["body"]["reasoning"] == {"effort": "none"}
    assert "out " in last_answer(page).locator(".usage").inner_text()


def test_stop_mid_stream(page: Page, web_server: Server) -> None:
    sign_in(page, web_server)
    tab = page.page
    tab.fill("#max_tokens", "3000")
    send(page, "Think for a long time")
    thinking = last_answer(page, "streaming").locator(".think-text")
    # polled from here: the page's CSP (no 'unsafe-eval') refuses Playwright's wait_for_function strings
    deadline = time.monotonic() + 20
    while len(thinking.text_content() or "") < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    tab.click("#stop")
    stopped = last_answer(page, "stopped")
    length = len(stopped.locator(".think-text").text_content() or "")
    assert length >= 20
    time.sleep(0.5)
    assert len(stopped.locator(".think-text").text_content() or "") == length
    assert tab.locator("#send").is_enabled() and tab.locator("#stop").is_disabled()
    # the server saw the client go away: the partial request is on the ledger, well short of 3000 tokens
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        latest = usage_records(web_server, 1)[0]
        if latest["status"] == "cancelled":
            break
        time.sleep(0.2)
    assert latest["status"] == "cancelled" and 0 < latest["output_tokens"] < 3000, latest


def test_image_upload_goes_with_the_message(page: Page, web_server: Server, tmp_path: Path) -> None:
    from media_cases import png

    sign_in(page, web_server)
    tab = page.page
    attach = tab.get_by_label("Attach image or video")
    assert attach.is_enabled()
    assert httpx.get(web_server.base_url + "/v1/capabilities").json()["media"]["reason"] is None
    image = tmp_path / "cat.png"
    image.write_bytes(png(64, 64))
    tab.fill("#max_tokens", "4")
    attach.set_input_files(str(image))
    send(page, "What is in this picture?")
    last_answer(page, "done")
    # a 64 x 64 image is resized up to 256 x 256: 64 image tokens (+2 markers) on top of the text
    assert usage_records(web_server, 1)[0]["input_tokens"] > 66
    assert attach.input_value() == ""
