"""Money: nano-dollar integers, the rate card and the exact cost of a request.

Owns: conversions between USD (Decimal/str) and integer nano-dollars (1e-9 USD), the PriceCard value and
`compute_cost`. Imports nothing from qwen35 and no database code.
Invariant: no float ever touches money. Token prices are held as integer nano-dollars per token, so a price
must be a multiple of $0.001 per million tokens (rejected otherwise); with that, every cost is an exact integer
and no rounding happens anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from qwen35.platform.errors import InvalidInput

NANOS_PER_USD = 1_000_000_000
TOKENS_PER_MILLION = 1_000_000
DEFAULT_MODEL = "*"  # the rate card row that applies to every model without its own row


def usd_to_nanos(amount: Decimal | str | int) -> int:
    """Exact USD -> nano-dollars; rejects floats, non-finite values and sub-nano precision."""
    if isinstance(amount, float) or isinstance(amount, bool):
        raise InvalidInput("money amounts must be given as a decimal string or Decimal, not float")
    try:
        value = Decimal(amount)
    except (InvalidOperation, ValueError, TypeError):
        raise InvalidInput(f"not a valid USD amount: {amount!r}") from None
    if not value.is_finite():
        raise InvalidInput(f"not a valid USD amount: {amount!r}")
    nanos = value * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise InvalidInput(f"USD amount {amount!r} is finer than one nano-dollar")
    return int(nanos)


def nanos_to_usd(nanos: int) -> Decimal:
    """Exact nano-dollars -> USD Decimal (e.g. for `usage.cost`)."""
    return (Decimal(nanos) / NANOS_PER_USD).normalize() if nanos else Decimal(0)


def per_million_to_per_token_nanos(usd_per_million: Decimal | str | int) -> int:
    """USD per million tokens -> integer nano-dollars per token (must divide exactly)."""
    nanos_per_million = usd_to_nanos(usd_per_million)
    if nanos_per_million < 0:
        raise InvalidInput(f"price must not be negative: {usd_per_million!r}")
    if nanos_per_million % TOKENS_PER_MILLION:
        raise InvalidInput(
            f"token price {usd_per_million!r} USD per million tokens must be a multiple of 0.001 "
            "(one nano-dollar per token)"
        )
    return nanos_per_million // TOKENS_PER_MILLION


@dataclass(frozen=True)
class PriceCard:
    """One row of the rate card, in integer nano-dollars."""

    model: str
    input_nanos_per_token: int
    cached_input_nanos_per_token: int
    output_nanos_per_token: int
    web_search_nanos_per_call: int
    effective_at_ms: int = 0

    def __post_init__(self) -> None:
        for name in (
            "input_nanos_per_token",
            "cached_input_nanos_per_token",
            "output_nanos_per_token",
            "web_search_nanos_per_call",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")

    @classmethod
    def from_usd(
        cls,
        model: str,
        input_per_million: Decimal | str,
        cached_input_per_million: Decimal | str,
        output_per_million: Decimal | str,
        web_search_per_call: Decimal | str,
        effective_at_ms: int = 0,
    ) -> PriceCard:
        search = usd_to_nanos(web_search_per_call)
        if search < 0:
            raise InvalidInput("web search price must not be negative")
        return cls(
            model=model,
            input_nanos_per_token=per_million_to_per_token_nanos(input_per_million),
            cached_input_nanos_per_token=per_million_to_per_token_nanos(cached_input_per_million),
            output_nanos_per_token=per_million_to_per_token_nanos(output_per_million),
            web_search_nanos_per_call=search,
            effective_at_ms=effective_at_ms,
        )

    def as_usd(self) -> dict[str, Decimal]:
        """Prices in USD as shown to users: per million tokens, and per web-search call."""
        return {
            "input_per_million": nanos_to_usd(self.input_nanos_per_token * TOKENS_PER_MILLION),
            "cached_input_per_million": nanos_to_usd(self.cached_input_nanos_per_token * TOKENS_PER_MILLION),
            "output_per_million": nanos_to_usd(self.output_nanos_per_token * TOKENS_PER_MILLION),
            "web_search_per_call": nanos_to_usd(self.web_search_nanos_per_call),
        }


# The seed's rate card: input $0.04/M, output $0.07/M, cached input $0.02/M, web search $0.013/call.
SEED_PRICES = PriceCard.from_usd(DEFAULT_MODEL, "0.04", "0.02", "0.07", "0.013")


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")
    return value


def compute_cost(
    prices: PriceCard,
    input_tokens: int,
    cached_input_tokens: int,
    output_tokens: int,
    web_search_calls: int = 0,
) -> int:
    """Exact cost in nano-dollars.

    `input_tokens` counts all prompt tokens, cached ones included (OpenAI convention); `output_tokens` includes
    reasoning tokens. Cost = uncached input x input rate + cached x cached rate + output x output rate
    + searches x search fee.
    """
    _check_count("input_tokens", input_tokens)
    _check_count("cached_input_tokens", cached_input_tokens)
    _check_count("output_tokens", output_tokens)
    _check_count("web_search_calls", web_search_calls)
    if cached_input_tokens > input_tokens:
        raise InvalidInput("cached_input_tokens cannot exceed input_tokens (input counts cached tokens)")
    return (
        (input_tokens - cached_input_tokens) * prices.input_nanos_per_token
        + cached_input_tokens * prices.cached_input_nanos_per_token
        + output_tokens * prices.output_nanos_per_token
        + web_search_calls * prices.web_search_nanos_per_call
    )


def worst_case_cost(prices: PriceCard, max_input_tokens: int, max_output_tokens: int, max_web_search_calls: int) -> int:
    """The hold taken at admission: every input token uncached (never cheaper than cached), all output used."""
    full_input_rate = max(prices.input_nanos_per_token, prices.cached_input_nanos_per_token)
    return (
        _check_count("max_input_tokens", max_input_tokens) * full_input_rate
        + _check_count("max_output_tokens", max_output_tokens) * prices.output_nanos_per_token
        + _check_count("max_web_search_calls", max_web_search_calls) * prices.web_search_nanos_per_call
    )
