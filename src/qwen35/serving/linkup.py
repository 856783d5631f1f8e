"""Linkup, the shipped web search provider: `POST {base_url}/search` with a bearer key, `searchResults` answers.

Owns the Linkup wire (request: q, depth, outputType, maxResults, includeDomains, excludeDomains, fromDate, toDate;
answer: results[] of {type, name, url, content}), timeouts, retries with backoff on 429 / 5xx / network errors,
and caps on the answer's size. Stdlib http.client run in a worker thread (no extra dependency; the official
linkup-sdk is not in the pinned set). Imports serving.web_search and serving.events only.
Invariants: the API key is sent only in the Authorization header and appears in no message, log line or
exception text (`repr` hides it); every failure is a `SearchError`; the real service is contacted only when the
base URL says so (tests point it at a local fake).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from qwen35.serving.events import WebSource
from qwen35.serving.web_search import SearchError, SearchQuery

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.linkup.so/v1"
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_RESULTS = 20
MAX_FIELD_CHARS = 20_000  # per result content; the prompt caps are smaller (serving.web_search)


@dataclass(frozen=True)
class LinkupProvider:
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout_s: float = 20.0  # per attempt, per socket operation and overall
    max_attempts: int = 3
    backoff_s: float = 0.5  # doubled after each retry; a Retry-After header (capped) wins
    max_backoff_s: float = 8.0
    name: str = "linkup"

    @classmethod
    def from_env(cls, api_key: str | None = None, base_url: str | None = None) -> LinkupProvider | None:
        """The provider of `LINKUP_API_KEY` / `LINKUP_BASE_URL` (explicit values win); None without a key."""
        key = api_key or os.environ.get("LINKUP_API_KEY")
        if not key:
            return None
        return cls(api_key=key, base_url=(base_url or os.environ.get("LINKUP_BASE_URL") or DEFAULT_BASE_URL))

    async def search(self, query: SearchQuery) -> list[WebSource]:
        return await asyncio.to_thread(self._search_blocking, query)

    # -- blocking side (a worker thread) ------------------------------------------------------------------------

    def body(self, query: SearchQuery) -> dict[str, Any]:
        body: dict[str, Any] = {
            "q": query.query, "depth": query.depth, "outputType": query.output_type,
            "maxResults": max(1, min(query.max_results, MAX_RESULTS)),
        }
        if query.include_domains:
            body["includeDomains"] = list(query.include_domains)
        if query.exclude_domains:
            body["excludeDomains"] = list(query.exclude_domains)
        if query.from_date:
            body["fromDate"] = query.from_date
        if query.to_date:
            body["toDate"] = query.to_date
        return body

    def _search_blocking(self, query: SearchQuery) -> list[WebSource]:
        payload = json.dumps(self.body(query)).encode()
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                status, headers, raw = self._post(payload)
            except SearchError as exc:
                if not exc.retryable or attempt == self.max_attempts:
                    raise
                log.warning("web search attempt %d failed (%s); retrying", attempt, exc.code)
            else:
                if status == 200:
                    return _results(raw)
                error = _status_error(status)
                if not error.retryable or attempt == self.max_attempts:
                    raise error
                log.warning("web search attempt %d got HTTP %d; retrying", attempt, status)
                retry_after = _retry_after(headers.get("retry-after"))
                if retry_after is not None:
                    delay = retry_after
            time.sleep(min(delay, self.max_backoff_s))
            delay *= 2
        raise SearchError("unavailable", "The search provider did not answer.")  # pragma: no cover - loop returns

    def _post(self, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        url = urllib.parse.urlsplit(self.base_url.rstrip("/") + "/search")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise SearchError("unavailable", "The search provider's base URL is not an http(s) URL.")
        conn_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = conn_type(url.hostname, url.port, timeout=self.timeout_s)
        deadline = time.monotonic() + self.timeout_s
        try:
            conn.request("POST", url.path or "/search", body=payload, headers={
                "Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json",
                "Accept": "application/json", "User-Agent": "qwen35-web-search",
            })
            response = conn.getresponse()
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() > deadline:
                    raise SearchError("unavailable", f"The search provider did not answer within {self.timeout_s:g} s.",
                                      retryable=True)
                chunk = response.read(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise SearchError("unavailable", "The search provider's answer was too large.")
                chunks.append(chunk)
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers, b"".join(chunks)
        except TimeoutError as exc:
            raise SearchError("unavailable", f"The search provider did not answer within {self.timeout_s:g} s.",
                              retryable=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            # the exception text may name the host; never the key (it is only in a header we built)
            raise SearchError("unavailable", f"Could not reach the search provider ({type(exc).__name__}).",
                              retryable=True) from exc
        finally:
            conn.close()


def _status_error(status: int) -> SearchError:
    if status == 429:
        return SearchError("too_many_requests", "The search provider is rate limiting this server.", retryable=True)
    if status >= 500:
        return SearchError("unavailable", f"The search provider failed (HTTP {status}).", retryable=True)
    if status in (401, 403):
        return SearchError("unavailable", "The search provider refused this server's credentials.")
    if status == 402:
        return SearchError("unavailable", "The search provider's account has no credit left.")
    if status in (400, 422):
        return SearchError("invalid_tool_input", "The search provider rejected the query.")
    return SearchError("unavailable", f"The search provider answered HTTP {status}.")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _results(raw: bytes) -> list[WebSource]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise SearchError("unavailable", "The search provider's answer was not JSON.") from exc
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise SearchError("unavailable", "The search provider's answer had no results list.")
    sources: list[WebSource] = []
    for item in results[:MAX_RESULTS]:
        if not isinstance(item, dict) or item.get("type", "text") != "text":
            continue  # image results have no text for the model
        url, name, content = item.get("url"), item.get("name"), item.get("content")
        if not isinstance(url, str) or not url:
            continue
        sources.append(WebSource(
            title=(name if isinstance(name, str) else url)[:500],
            url=url[:2000],
            content=(content if isinstance(content, str) else "")[:MAX_FIELD_CHARS],
            page_age=item.get("date") if isinstance(item.get("date"), str) else None,
        ))
    return sources
