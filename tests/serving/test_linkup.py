"""The Linkup provider against a local fake Linkup: the request it sends, the answer it reads, retries with
backoff on 429 / 5xx, timeouts, size caps, and the key kept out of every message."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fake_linkup import FAKE_KEY, Reply, fake_linkup, results
from qwen35.serving.linkup import LinkupProvider
from qwen35.serving.web_search import SearchError, SearchQuery


@pytest.fixture
def fake():  # type: ignore[no-untyped-def]
    with fake_linkup() as server:
        yield server


def provider(base_url: str, **kwargs: object) -> LinkupProvider:
    return LinkupProvider(api_key=FAKE_KEY, base_url=base_url, backoff_s=0.01, **kwargs)  # type: ignore[arg-type]


def search(p: LinkupProvider, query: SearchQuery) -> list:  # type: ignore[type-arg]
    return asyncio.run(p.search(query))


def test_request_and_answer_on_the_wire(fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(Reply(body={"results": [
        {"type": "text", "name": "A", "url": "https://a.example/x", "content": "alpha"},
        {"type": "image", "name": "pic", "url": "https://a.example/p.png"},
        {"type": "text", "name": "B", "url": "https://b.example/", "content": "beta", "date": "2026-11-30"},
    ]}))
    query = SearchQuery("paris weather", depth="deep", max_results=7, include_domains=("a.example",),
                        exclude_domains=("c.example",), from_date="2026-01-01", to_date="2026-12-01")
    found = search(provider(fake.base_url), query)
    assert [(s.title, s.url, s.content, s.page_age) for s in found] == [
        ("A", "https://a.example/x", "alpha", None), ("B", "https://b.example/", "beta", "2026-11-30")]
    (got,) = fake.received
    assert got.path == "/v1/search"
    assert got.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert got.body == {"q": "paris weather", "depth": "deep", "outputType": "searchResults", "maxResults": 7,
                        "includeDomains": ["a.example"], "excludeDomains": ["c.example"],
                        "fromDate": "2026-01-01", "toDate": "2026-12-01"}


def test_retries_429_and_5xx_then_succeeds(fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(Reply(429, {"error": "slow down"}, headers={"Retry-After": "0"}), Reply(503, {}), Reply())
    found = search(provider(fake.base_url), SearchQuery("q"))
    assert len(found) == 2 and len(fake.received) == 3


@pytest.mark.parametrize(("status", "code", "attempts"), [
    (500, "unavailable", 3), (429, "too_many_requests", 3), (401, "unavailable", 1), (400, "invalid_tool_input", 1),
])
def test_failures_are_search_errors_without_the_key(fake, caplog, status, code, attempts) -> None:  # type: ignore[no-untyped-def]
    fake.script(Reply(status, {"error": {"message": f"bad key {FAKE_KEY}"}}))
    p = provider(fake.base_url)
    with caplog.at_level(logging.DEBUG), pytest.raises(SearchError) as info:
        search(p, SearchQuery("q"))
    assert info.value.code == code and len(fake.received) == attempts
    assert FAKE_KEY not in str(info.value) and FAKE_KEY not in info.value.message
    assert FAKE_KEY not in repr(p) and FAKE_KEY not in caplog.text


def test_timeout_is_unavailable(fake) -> None:  # type: ignore[no-untyped-def]
    fake.script(Reply(delay_s=1.0))
    with pytest.raises(SearchError) as info:
        search(provider(fake.base_url, timeout_s=0.2, max_attempts=2), SearchQuery("q"))
    assert info.value.code == "unavailable" and "did not answer" in info.value.message
    assert len(fake.received) == 2


def test_unreachable_and_malformed_answers(fake) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SearchError) as info:
        search(provider("http://127.0.0.1:9/v1", max_attempts=1), SearchQuery("q"))
    assert info.value.code == "unavailable"
    fake.script(Reply(body={"answer": "no results key"}))
    with pytest.raises(SearchError, match="no results list"):
        search(provider(fake.base_url), SearchQuery("q"))
    big = "x" * 50_000
    fake.script(Reply(body=results(*[(f"t{i}", f"https://e.example/{i}", big) for i in range(30)])))
    found = search(provider(fake.base_url), SearchQuery("q"))
    assert len(found) == 20 and all(len(s.content) == 20_000 for s in found)  # result count and size caps


def test_from_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("LINKUP_API_KEY", raising=False)
    assert LinkupProvider.from_env() is None
    monkeypatch.setenv("LINKUP_API_KEY", FAKE_KEY)
    monkeypatch.setenv("LINKUP_BASE_URL", "http://127.0.0.1:1/v1")
    p = LinkupProvider.from_env()
    assert p is not None and p.base_url == "http://127.0.0.1:1/v1" and FAKE_KEY not in repr(p)
    assert LinkupProvider.from_env(base_url="http://x.invalid/v1").base_url == "http://x.invalid/v1"  # type: ignore[union-attr]
    monkeypatch.delenv("LINKUP_BASE_URL")
    assert LinkupProvider.from_env().base_url == "https://api.linkup.so/v1"  # type: ignore[union-attr]
