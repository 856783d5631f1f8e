"""Exact money arithmetic: conversions, price validation and the cost formula over many random inputs."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from qwen35.platform import SEED_PRICES, InvalidInput, PriceCard, compute_cost, nanos_to_usd, usd_to_nanos
from qwen35.platform.money import worst_case_cost


def _reference_cost_usd(
    prices_usd: tuple[str, str, str, str], inp: int, cached: int, out: int, searches: int
) -> Decimal:
    """The issue's formula in plain Decimal USD, independent of the nano-dollar representation."""
    input_pm, cached_pm, output_pm, search = (Decimal(p) for p in prices_usd)
    million = Decimal(1_000_000)
    return (inp - cached) * input_pm / million + cached * cached_pm / million + out * output_pm / million + (
        searches * search
    )


def test_seed_prices() -> None:
    assert SEED_PRICES.as_usd() == {
        "input_per_million": Decimal("0.04"),
        "cached_input_per_million": Decimal("0.02"),
        "output_per_million": Decimal("0.07"),
        "web_search_per_call": Decimal("0.013"),
    }
    # 1M uncached input + 1M cached + 1M output + 1 search = 0.04 + 0.02 + 0.07 + 0.013
    assert nanos_to_usd(compute_cost(SEED_PRICES, 2_000_000, 1_000_000, 1_000_000, 1)) == Decimal("0.143")


def test_cost_matches_decimal_reference_over_random_inputs() -> None:
    rng = random.Random(20261127)
    for _ in range(5000):
        # Prices are any multiple of $0.001/M tokens up to $100/M; search fees any nano-dollar amount.
        prices_usd = (
            str(Decimal(rng.randint(0, 100_000)) / 1000),
            str(Decimal(rng.randint(0, 100_000)) / 1000),
            str(Decimal(rng.randint(0, 100_000)) / 1000),
            str(Decimal(rng.randint(0, 10**9)) / 10**9),
        )
        card = PriceCard.from_usd("m", *prices_usd)
        inp = rng.choice([0, 1, rng.randint(0, 300), rng.randint(0, 300_000), rng.randint(0, 10**9)])
        cached = rng.randint(0, inp)
        out = rng.choice([0, 1, rng.randint(0, 40_000), rng.randint(0, 10**8)])
        searches = rng.choice([0, 0, 1, rng.randint(0, 50)])
        cost = compute_cost(card, inp, cached, out, searches)
        assert isinstance(cost, int)
        assert nanos_to_usd(cost) == _reference_cost_usd(prices_usd, inp, cached, out, searches)
        worst = worst_case_cost(card, inp, out, searches)
        assert worst >= cost


def test_cost_is_additive_over_splits() -> None:
    """Charging a stream in two parts costs the same as charging it whole (no rounding anywhere)."""
    rng = random.Random(7)
    for _ in range(2000):
        out = rng.randint(0, 100_000)
        cut = rng.randint(0, out)
        whole = compute_cost(SEED_PRICES, 0, 0, out)
        assert compute_cost(SEED_PRICES, 0, 0, cut) + compute_cost(SEED_PRICES, 0, 0, out - cut) == whole


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("10", 10 * 10**9), ("0.5", 5 * 10**8), ("0.000000001", 1), ("-2.25", -2_250_000_000), (3, 3 * 10**9)],
)
def test_usd_to_nanos(text: str, nanos: int) -> None:
    assert usd_to_nanos(text) == nanos
    assert usd_to_nanos(nanos_to_usd(nanos)) == nanos


@pytest.mark.parametrize("bad", [0.1, "abc", "NaN", "Infinity", "0.0000000001", "", None, True])
def test_usd_to_nanos_rejects(bad: object) -> None:
    with pytest.raises(InvalidInput):
        usd_to_nanos(bad)  # type: ignore[arg-type]


def test_price_granularity_and_validation() -> None:
    with pytest.raises(InvalidInput, match="multiple of 0.001"):
        PriceCard.from_usd("m", "0.0015", "0", "0", "0")
    with pytest.raises(InvalidInput):
        PriceCard.from_usd("m", "-0.04", "0", "0", "0")
    with pytest.raises(InvalidInput):
        PriceCard.from_usd("m", "0.04", "0", "0", "-1")
    with pytest.raises(InvalidInput):
        compute_cost(SEED_PRICES, 10, 11, 0)  # cached cannot exceed input
    with pytest.raises(InvalidInput):
        compute_cost(SEED_PRICES, -1, 0, 0)
