"""The one thinking policy shared by every API: on/off, effort -> budget, and fitting the budget into max_tokens.

Owns the mapping from user-facing controls (enable_thinking, reasoning_effort, thinking_budget, Anthropic
`thinking`, Responses `reasoning.effort`; each API converts to the first three) to the engine's `ThinkingBudget`.
Imports only engine.request data types, serving errors and serving.sampling (the budget range).
Invariant: when thinking is on, the engine always gets a budget, and reasoning + its forced close never use more
than `max_tokens - answer_reserve(max_tokens)` tokens, so an answer always has room.

Budget fitting (documented for users): `max_tokens` counts reasoning and answer together. The answer keeps a reserve
of min(1024, max_tokens // 2) tokens. If the thinking budget plus its graceful close (wind-down text + `</think>`)
does not fit into the rest, the budget shrinks to fit; if even the wind-down text does not fit, thinking is closed
with `</think>` alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qwen35.engine.request import ThinkingBudget
from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.sampling import check_number

DEFAULT_THINKING_BUDGET = 4096  # effort "medium", the seed's default
EFFORT_BUDGETS: Mapping[str, int] = {
    "minimal": 1024,  # OpenAI's lowest non-zero effort; same budget as "low"
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32768,  # OpenAI's step above "high"; same budget as "max"
    "max": 32768,
}
MAX_ANSWER_RESERVE = 1024


@dataclass(frozen=True)
class ThinkingPlan:
    """Resolved thinking for one request: whether the prompt opens a think block, and the requested budget."""

    enabled: bool
    budget_tokens: int | None  # requested reasoning budget (before fitting into max_tokens); None when off


def resolve_thinking(
    enable_thinking: bool | None,
    reasoning_effort: str | None,
    thinking_budget: int | None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> ThinkingPlan:
    """Apply the policy: an explicit enable_thinking (top level, else in chat_template_kwargs) decides on/off;
    otherwise effort "none" turns thinking off; thinking_budget overrides the effort's budget."""
    kwargs = chat_template_kwargs or {}
    if enable_thinking is None and "enable_thinking" in kwargs:
        value = kwargs["enable_thinking"]
        if not isinstance(value, bool):
            raise InvalidRequestError(
                "chat_template_kwargs.enable_thinking must be a boolean", param="chat_template_kwargs"
            )
        enable_thinking = value
    if reasoning_effort is not None and reasoning_effort != "none" and reasoning_effort not in EFFORT_BUDGETS:
        raise InvalidRequestError(
            f"reasoning_effort must be one of none, {', '.join(EFFORT_BUDGETS)}", param="reasoning_effort"
        )
    check_number("thinking_budget", thinking_budget)  # the one range (serving.sampling)
    if enable_thinking is None:
        enable_thinking = reasoning_effort != "none"
    if not enable_thinking:
        return ThinkingPlan(enabled=False, budget_tokens=None)
    if thinking_budget is not None:
        return ThinkingPlan(enabled=True, budget_tokens=thinking_budget)
    if reasoning_effort is not None and reasoning_effort != "none":
        return ThinkingPlan(enabled=True, budget_tokens=EFFORT_BUDGETS[reasoning_effort])
    return ThinkingPlan(enabled=True, budget_tokens=DEFAULT_THINKING_BUDGET)


def answer_reserve(max_tokens: int) -> int:
    """Tokens kept for the answer out of `max_tokens` when thinking is on."""
    return min(MAX_ANSWER_RESERVE, max_tokens // 2)


def fit_budget(
    budget_tokens: int, max_tokens: int, think_end_id: int, wind_down_ids: Sequence[int]
) -> ThinkingBudget:
    """The engine budget for a request allowed `max_tokens` output tokens in total (see the module docstring)."""
    room = max_tokens - answer_reserve(max_tokens)
    wind_down = tuple(wind_down_ids)
    closing = len(wind_down) + 1
    if budget_tokens + closing <= room:
        return ThinkingBudget(budget_tokens, think_end_id, wind_down)
    if room - closing >= 0:
        return ThinkingBudget(room - closing, think_end_id, wind_down)
    return ThinkingBudget(max(0, room - 1), think_end_id, ())
