"""Anthropic's web search server tool -> the neutral `WebSearchOptions` (the server runs the searches).

Owns the reading of `{"type": "web_search_20250305" | "web_search_20260209", "name": "web_search", "max_uses",
"allowed_domains", "blocked_domains", "user_location"}`. Imports serving types and this package's request types
only (never the OpenAI family). Invariant: a malformed setting is a 400 naming its field.
"""

from __future__ import annotations

import re

from qwen35.api.anthropic.protocol_request import ToolParam
from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.request import WebSearchOptions

TOOL_TYPES = frozenset({"web_search_20250305", "web_search_20260209"})
_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(/[^\s]*)?$")


def _domains(value: list[str] | None, param: str) -> tuple[str, ...]:
    for i, domain in enumerate(value or ()):
        if not _DOMAIN.match(domain):
            raise InvalidRequestError(f"{param}.{i}: `{domain}` is not a domain name", param=f"{param}.{i}")
    return tuple(value or ())


def options(tool: ToolParam, index: int) -> WebSearchOptions:
    param = f"tools.{index}"
    if tool.name != "web_search":
        raise InvalidRequestError(f"{param}.name: the web search tool must be named `web_search`",
                                  param=f"{param}.name")
    if tool.max_uses is not None and tool.max_uses < 1:
        raise InvalidRequestError(f"{param}.max_uses: must be greater than 0", param=f"{param}.max_uses")
    if tool.allowed_domains and tool.blocked_domains:
        raise InvalidRequestError(f"{param}: send either allowed_domains or blocked_domains, not both",
                                  param=f"{param}.blocked_domains")
    location = None
    if tool.user_location:
        fields = [tool.user_location.get(k) for k in ("city", "region", "country")]
        location = ", ".join(str(f).strip()[:64] for f in fields if isinstance(f, str) and f.strip()) or None
    return WebSearchOptions(
        max_uses=tool.max_uses,
        include_domains=_domains(tool.allowed_domains, f"{param}.allowed_domains"),
        exclude_domains=_domains(tool.blocked_domains, f"{param}.blocked_domains"),
        location=location,
        param=f"{param}.type",
    )
