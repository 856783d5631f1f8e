"""End-to-end: the playground's other controls in headless Chromium against the real `qwen35 serve`.

Tool calls (forced by the grammar, so they hold on random weights) shown and answered; per-token logprobs; a JSON
schema answer; rendering (markdown, highlighted code, KaTeX maths) of an imported conversation with hostile HTML
sanitized; edit and regenerate; export; the narrow (phone) layout.
"""

from __future__ import annotations

import json
from pathlib import Path

from web_harness import Page, Server, last_answer, send, sign_in

WEATHER_TOOL = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}}, "required": ["city"]}}}]


def test_tool_calls_are_shown_and_answered(page: Page, web_server: Server) -> None:
    sign_in(page, web_server)
    tab = page.page
    tab.select_option("#reasoning", "none")
    tab.fill("#max_tokens", "60")
    tab.fill("#tools", json.dumps(WEATHER_TOOL))
    tab.select_option("#tool_choice", "required")
    tab.uncheck("#parallel_tools")
    sent = send(page, "Weather in Paris?")
    assert sent["body"]["tool_choice"] == "required" and sent["body"]["parallel_tool_calls"] is False
    assert sent["body"]["tools"][0]["function"]["name"] == "get_weather"
    call = last_answer(page).locator(".toolcall")
    assert call.count() == 1
    assert "Tool call: get_weather" in call.inner_text()
    assert json.loads(call.locator("pre").inner_text())["city"] in ("Paris", "Rome")
    assert "finish: tool_calls" in last_answer(page).locator(".usage").inner_text()
    call.get_by_label("Result of get_weather").fill('{"temperature": 21}')
    with tab.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/chat/completions")) as request:
        call.get_by_role("button", name="Send result").click()
    messages = request.value.post_data_json["messages"]
    assert messages[-2]["role"] == "assistant" and messages[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[-1] == {"role": "tool", "tool_call_id": messages[-2]["tool_calls"][0]["id"],
                            "content": '{"temperature": 21}'}
    last_answer(page)
    assert tab.locator("article.tool").inner_text().endswith('{"temperature": 21}')


def test_logprobs_per_token_view(page: Page, web_server: Server) -> None:
    sign_in(page, web_server)
    tab = page.page
    tab.select_option("#reasoning", "none")
    tab.fill("#max_tokens", "12")
    tab.check("#logprobs")
    tab.fill("#top_logprobs", "3")
    sent = send(page, "Count")
    assert sent["body"]["logprobs"] is True and sent["body"]["top_logprobs"] == 3
    answer = last_answer(page)
    answer.get_by_role("button", name="Tokens").click()
    tokens = answer.locator(".logprobs .tok")
    assert tokens.count() == 12
    tokens.first.click()
    detail = answer.locator(".tok-detail").inner_text()
    assert "logprob" in detail and detail.count("%") == 3


def test_json_schema_answer(page: Page, web_server: Server) -> None:
    sign_in(page, web_server)
    tab = page.page
    tab.select_option("#reasoning", "none")
    tab.fill("#max_tokens", "64")
    tab.select_option("#format", "json_schema")
    schema = {"type": "object", "properties": {"mood": {"enum": ["happy", "sad"]}}, "required": ["mood"]}
    tab.fill("#schema", json.dumps(schema))
    sent = send(page, "How are you?")
    assert sent["body"]["response_format"]["json_schema"]["schema"] == schema
    assert json.loads(last_answer(page).locator(".body.answer").inner_text())["mood"] in ("happy", "sad")


def test_imported_markdown_renders_safely_then_edit_and_export(page: Page, web_server: Server, tmp_path: Path) -> None:
    sign_in(page, web_server)
    tab = page.page
    answer = ("**bold** and `x`\n\n```python\nprint(1)\n```\n\n$$a^2+b^2=c^2$$\n\ninline $x_1$ here\n\n"
              '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>[link](javascript:alert(1))')
    export = {"format": "qwen35.conversations", "version": 1, "conversations": [{
        "id": "imported1", "title": "Imported maths", "messages": [
            {"role": "user", "content": "show me"},
            {"role": "assistant", "api": "chat.completions", "content": answer, "reasoning": "hmm", "state": "done",
             "toolCalls": [], "logprobs": [], "usage": {"input": 5, "cached": 2, "output": 9, "reasoning": 1,
                                                        "cost": 0.0000012}, "finish": "stop"}]}]}
    upload = tmp_path / "conversations.json"
    upload.write_text(json.dumps(export))
    tab.set_input_files("#import-file", str(upload))
    tab.get_by_role("button", name="Imported maths", exact=True).click()
    body = last_answer(page).locator(".body.answer")
    assert body.locator("strong").inner_text() == "bold"
    assert body.locator("pre code.hljs").count() == 1
    assert body.locator(".katex").count() == 2 and body.locator(".math.display .katex-display").count() == 1
    assert body.locator("img[onerror], script").count() == 0
    assert body.locator("a[href^=javascript]").count() == 0
    assert tab.evaluate("window.pwned === undefined")
    assert "in 5 (cached 2)" in last_answer(page).locator(".usage").inner_text()
    # edit the question: the conversation is cut there and the answer regenerated from the edited text
    tab.fill("#max_tokens", "16")
    tab.get_by_role("button", name="Edit this message").click()
    tab.get_by_label("Edited message").fill("show me again")
    with tab.expect_request(lambda r: r.method == "POST" and "/v1/" in r.url) as request:
        tab.get_by_role("button", name="Save & regenerate").click()
    assert request.value.post_data_json["messages"] == [{"role": "user", "content": "show me again"}]
    last_answer(page)
    with tab.expect_download() as download:
        tab.get_by_role("button", name="Export").click()
    saved = json.loads(Path(download.value.path()).read_text())
    convs = {c["id"]: c for c in saved["conversations"]}
    assert convs["imported1"]["messages"][0]["content"] == "show me again"


def test_narrow_layout_has_no_horizontal_scroll(page: Page, web_server: Server) -> None:
    tab = page.page
    tab.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, web_server)
    assert tab.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth + 1")
    tab.goto(web_server.base_url + "/dashboard")
    tab.wait_for_selector("body[data-ready=true]")
    assert tab.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth + 1")
