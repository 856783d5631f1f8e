"""The thinking policy: on/off resolution, effort -> budget, budget fitting into max_tokens."""

from __future__ import annotations

import pytest

from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.thinking import (
    DEFAULT_THINKING_BUDGET,
    EFFORT_BUDGETS,
    answer_reserve,
    fit_budget,
    resolve_thinking,
)


def test_thinking_on_by_default_with_the_medium_budget() -> None:
    plan = resolve_thinking(None, None, None)
    assert plan.enabled and plan.budget_tokens == DEFAULT_THINKING_BUDGET == 4096


@pytest.mark.parametrize("effort,budget", [("low", 1024), ("medium", 4096), ("high", 16384), ("max", 32768)])
def test_effort_maps_to_budget(effort: str, budget: int) -> None:
    assert resolve_thinking(None, effort, None).budget_tokens == budget == EFFORT_BUDGETS[effort]


def test_off_switches() -> None:
    assert not resolve_thinking(False, None, None).enabled
    assert not resolve_thinking(None, "none", None).enabled
    assert not resolve_thinking(None, None, None, {"enable_thinking": False}).enabled
    # an explicit enable_thinking decides over effort "none"
    assert resolve_thinking(True, "none", None).enabled


def test_thinking_budget_overrides_effort() -> None:
    assert resolve_thinking(None, "low", 2000).budget_tokens == 2000


@pytest.mark.parametrize("bad", [1023, 32769, 0])
def test_budget_range(bad: int) -> None:
    with pytest.raises(InvalidRequestError) as info:
        resolve_thinking(None, None, bad)
    assert info.value.param == "thinking_budget"


def test_unknown_effort_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as info:
        resolve_thinking(None, "extreme", None)
    assert info.value.param == "reasoning_effort"


def test_budget_fits_when_there_is_room() -> None:
    budget = fit_budget(1024, 8192, 99, (1, 2, 3))
    assert (budget.max_thinking_tokens, budget.think_end_id, budget.wind_down_ids) == (1024, 99, (1, 2, 3))


def test_budget_shrinks_to_leave_the_answer_reserve() -> None:
    max_tokens, wind_down = 4096, (1, 2, 3)
    budget = fit_budget(4096, max_tokens, 99, wind_down)
    used = budget.max_thinking_tokens + len(budget.wind_down_ids) + 1
    assert used == max_tokens - answer_reserve(max_tokens) == 4096 - 1024


def test_tiny_max_tokens_closes_thinking_without_wind_down() -> None:
    budget = fit_budget(1024, 6, 99, tuple(range(10)))
    assert budget.wind_down_ids == ()
    assert budget.max_thinking_tokens + 1 <= 6 - answer_reserve(6)
