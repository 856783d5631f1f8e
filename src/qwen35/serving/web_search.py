"""The web search tool, provider-neutral: what the model is offered, what a provider is asked, what the model reads.

Owns the `web_search` function offered to the model, the `SearchProvider` protocol (Linkup is the shipped one,
`serving.linkup`), the mapping of a request's `WebSearchOptions` onto a provider query, the caps on what a search
may put into the prompt, the text of a tool response (results, or the reason a search did not run), and the
citations found in an answer. Imports serving types only; no HTTP, no platform.
Invariants: a provider failure is a `SearchError` with a readable, secret-free message; a tool response never
exceeds the caps of its context size; result numbers run on across the searches of one request, so an answer's
"[n]" names one source.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from qwen35.serving.events import UrlCitation, WebSource
from qwen35.serving.request import SearchContextSize, ToolSpec, WebSearchOptions

TOOL_NAME = "web_search"
DEFAULT_MAX_USES = 5  # searches per request when neither the request nor the server says
MAX_QUERY_CHARS = 200  # also the schema's maxLength: a forced call's grammar keeps queries short
Depth = Literal["standard", "deep"]


@dataclass(frozen=True)
class ContextBudget:
    """How much of the results the model reads, per `search_context_size`."""

    max_results: int
    max_chars_per_result: int
    depth: Depth


CONTEXT_BUDGETS: dict[str, ContextBudget] = {
    "low": ContextBudget(3, 600, "standard"),
    "medium": ContextBudget(5, 1200, "standard"),
    "high": ContextBudget(8, 2400, "deep"),
}


@dataclass(frozen=True)
class SearchQuery:
    """One provider call (Linkup `POST /search`: q, depth, outputType, maxResults, domains, dates)."""

    query: str
    depth: Depth = "standard"
    output_type: Literal["searchResults"] = "searchResults"
    max_results: int = 5
    include_domains: tuple[str, ...] = ()
    exclude_domains: tuple[str, ...] = ()
    from_date: str | None = None
    to_date: str | None = None


class SearchError(Exception):
    """A provider call that gave no results. `code` is a WebSearchResult error code; `message` is safe to show."""

    def __init__(self, code: str, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class SearchProvider(Protocol):
    name: str

    async def search(self, query: SearchQuery) -> list[WebSource]:
        """Results of `query`, or raise SearchError (never anything else)."""
        ...


TOOL_PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS,
                             "description": "What to search the web for, as a search query."}},
    "required": ["query"],
}


def tool_spec(options: WebSearchOptions) -> ToolSpec:
    """The function the model sees: it writes a query; the server searches and answers with the results."""
    description = ("Search the web for current information. Returns numbered results with a title, a URL and an "
                   "excerpt; cite a result as [n].")
    if options.location:
        description += f" The user is in {options.location}."
    return ToolSpec(name=TOOL_NAME, description=description, parameters=TOOL_PARAMETERS)


@dataclass(frozen=True)
class WebSearchService:
    """The server's search tool: a provider plus its limits (`qwen35 serve` builds one when a key is set)."""

    provider: SearchProvider
    max_uses: int = DEFAULT_MAX_USES  # server cap on searches per request (a request may ask for fewer)

    def max_uses_for(self, options: WebSearchOptions) -> int:
        return self.max_uses if options.max_uses is None else min(options.max_uses, self.max_uses)

    def query(self, options: WebSearchOptions, text: str) -> SearchQuery:
        budget = CONTEXT_BUDGETS[options.context_size]
        return SearchQuery(
            query=text, depth=budget.depth, max_results=budget.max_results,
            include_domains=options.include_domains, exclude_domains=options.exclude_domains,
            from_date=options.from_date, to_date=options.to_date,
        )


def query_of(arguments_json: str) -> str | None:
    """The query the model wrote, or None when its call has none."""
    try:
        arguments = json.loads(arguments_json) if arguments_json else {}
    except ValueError:
        return None
    query = arguments.get("query") if isinstance(arguments, dict) else None
    return query.strip() if isinstance(query, str) and query.strip() else None


# Added-token strings of the chat template: a page must not be able to close the tool response or open a turn.
_CONTROL = re.compile(r"<\|[a-z_]+\|>|</?(?:tool_response|tool_call|think|function|parameter)[^>]*>")


def _clean(text: str) -> str:
    return _CONTROL.sub(" ", text)


@dataclass
class SourceBook:
    """The sources of one request, numbered in the order the model read them (for [n] and URL citations)."""

    sources: list[WebSource] = field(default_factory=list)

    def tool_response(self, query: str, found: Sequence[WebSource], context_size: SearchContextSize) -> str:
        """The tool response text for the model; numbers the sources it shows."""
        budget = CONTEXT_BUDGETS[context_size]
        shown = list(found)[: budget.max_results]
        if not shown:
            return f'Web search for "{_clean(query)}" found no results.'
        lines = [f'Web search results for "{_clean(query)}":']
        for source in shown:
            self.sources.append(source)
            content = _clean(source.content)
            if len(content) > budget.max_chars_per_result:
                content = content[: budget.max_chars_per_result].rstrip() + " ..."
            lines.append(f"\n[{len(self.sources)}] {_clean(source.title)}\nURL: {_clean(source.url)}\n{content}")
        return "\n".join(lines)

    def citations(self, text: str) -> tuple[UrlCitation, ...]:
        """Spans of `text` citing a source: "[n]" markers of shown sources, and source URLs written out."""
        found: list[UrlCitation] = []
        for match in re.finditer(r"\[(\d{1,3})\]", text):
            number = int(match.group(1))
            if 1 <= number <= len(self.sources):
                source = self.sources[number - 1]
                found.append(UrlCitation(source.url, source.title, match.start(), match.end(), _cited(source)))
        seen: set[str] = set()
        for source in self.sources:
            if not source.url or source.url in seen:
                continue
            seen.add(source.url)
            start = text.find(source.url)
            while start >= 0:
                found.append(UrlCitation(source.url, source.title, start, start + len(source.url), _cited(source)))
                start = text.find(source.url, start + len(source.url))
        return tuple(sorted(found, key=lambda c: (c.start_index, c.end_index)))


def _cited(source: WebSource) -> str:
    return _clean(source.content)[:150]


NOT_RUN = {
    "max_uses_exceeded": "Web search was not run: this request's limit of searches is reached. Answer with the "
                         "results you have.",
    "insufficient_credits": "Web search was not run: the account's credits do not cover another search. Answer "
                            "with the results you have.",
    "invalid_tool_input": "Web search was not run: the call had no query. Call web_search with a query.",
    "query_too_long": f"Web search was not run: the query is longer than {MAX_QUERY_CHARS} characters.",
}


def failure_text(code: str, message: str) -> str:
    """The tool response for a search that gave no results."""
    return NOT_RUN.get(code) or f"Web search failed ({code}): {message}"
