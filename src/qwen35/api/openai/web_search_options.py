"""OpenAI's ways of turning on web search -> the neutral `WebSearchOptions` (the server runs the search).

Owns the reading of the Responses `web_search` tool (and its dated / preview spellings: `search_context_size`,
`filters.allowed_domains`, `user_location`) with the request's `max_tool_calls`, and of Chat Completions'
`web_search_options` (`search_context_size`, `user_location`). Imports serving types only.
Invariant: a malformed web search setting is a 400 naming its field, never ignored.
"""

from __future__ import annotations

import re
from typing import Any

from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.request import WebSearchOptions

RESPONSES_TYPES = frozenset({"web_search", "web_search_2025_08_26", "web_search_preview",
                             "web_search_preview_2025_03_11"})
_CONTEXT_SIZES = ("low", "medium", "high")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(/[^\s]*)?$")


def context_size(value: Any, param: str) -> Any:
    if value is None:
        return "medium"
    if value not in _CONTEXT_SIZES:
        raise InvalidRequestError(f"{param} must be one of low, medium, high", param=param)
    return value


def location_text(value: Any, param: str) -> str | None:
    """`{"type": "approximate", "approximate": {...}}` (Chat) or `{"type": "approximate", city, ...}` (Responses)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{param} must be an object", param=param)
    fields = value.get("approximate", value)
    if not isinstance(fields, dict):
        raise InvalidRequestError(f"{param}.approximate must be an object", param=param)
    parts = [fields.get(k) for k in ("city", "region", "country")]
    if any(p is not None and not isinstance(p, str) for p in parts):
        raise InvalidRequestError(f"{param} fields must be strings", param=param)
    text = ", ".join(p.strip()[:64] for p in parts if p and p.strip())
    return text or None


def domains(value: Any, param: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 100:
        raise InvalidRequestError(f"{param} must be a list of at most 100 domains", param=param)
    for i, domain in enumerate(value):
        if not isinstance(domain, str) or not _DOMAIN.match(domain):
            raise InvalidRequestError(f"{param}[{i}] is not a domain name", param=f"{param}[{i}]")
    return tuple(value)


def max_uses(value: Any, param: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{param} must be a positive integer", param=param)
    return value


def responses_options(tool: dict[str, Any], index: int, max_tool_calls: Any) -> WebSearchOptions:
    param = f"tools[{index}]"
    filters = tool.get("filters")
    if filters is not None and not isinstance(filters, dict):
        raise InvalidRequestError(f"{param}.filters must be an object", param=f"{param}.filters")
    return WebSearchOptions(
        max_uses=max_uses(max_tool_calls, "max_tool_calls"),
        context_size=context_size(tool.get("search_context_size"), f"{param}.search_context_size"),
        include_domains=domains((filters or {}).get("allowed_domains"), f"{param}.filters.allowed_domains"),
        location=location_text(tool.get("user_location"), f"{param}.user_location"),
        param=param,
    )


def chat_options(value: Any) -> WebSearchOptions | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequestError("web_search_options must be an object", param="web_search_options")
    return WebSearchOptions(
        context_size=context_size(value.get("search_context_size"), "web_search_options.search_context_size"),
        location=location_text(value.get("user_location"), "web_search_options.user_location"),
        param="web_search_options",
    )
