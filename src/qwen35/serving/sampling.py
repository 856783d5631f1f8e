"""The product's request parameters: one table of defaults and ranges, applied identically on every API.

Owns `PARAMETERS` (default and range of every sampler control, output limit, logprobs count and thinking budget),
the `Sampling` value every converter builds (instead of mirroring the engine's fields one by one), and
`resolve_sampling`, the single place where a request's values are range-checked and defaulted. Imports only
serving.errors. Invariant: an omitted field (None) gets the table's default and a present one is checked against the
table's range, whatever API it came from; each family passes its own spelling of the names so a 400 names the
field the caller sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qwen35.serving.errors import InvalidRequestError

MAX_STOP = 4
MAX_LOGIT_BIAS = 100.0
MAX_LOGIT_BIAS_ENTRIES = 1024
_TOKEN_ID = re.compile(r"-?[0-9]{1,12}")  # ASCII digits only: int() refuses "¹", and "--5" is no number


@dataclass(frozen=True)
class Limit:
    """Default and closed range [low, high] (or (low, high] with `low_open`) of one numeric parameter."""

    default: float | int | None
    low: float
    high: float
    integer: bool = False
    low_open: bool = False
    disabled: int | None = None  # an out-of-range integer that means "off" (top_k -1, as in vLLM)

    def describe(self, name: str) -> str:
        low = "greater than" if self.low_open else "between"
        if self.low_open:
            text = f"{name} must be {low} {_num(self.low)} and at most {_num(self.high)}"
        else:
            text = f"{name} must be {low} {_num(self.low)} and {_num(self.high)}"
        if self.disabled is not None:
            text += f" (or {self.disabled} to disable it)"
        return text


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


PARAMETERS: Mapping[str, Limit] = {
    "temperature": Limit(0.7, 0.0, 2.0),
    "top_p": Limit(0.95, 0.0, 1.0, low_open=True),
    "top_k": Limit(20, 1, 200, integer=True, disabled=-1),
    "min_p": Limit(0.0, 0.0, 1.0),
    "presence_penalty": Limit(0.0, -2.0, 2.0),
    "frequency_penalty": Limit(0.0, -2.0, 2.0),
    "repetition_penalty": Limit(1.0, 0.1, 2.0),
    "seed": Limit(None, 0, 2147483647, integer=True),
    "max_tokens": Limit(4096, 1, 32768, integer=True),
    "min_tokens": Limit(0, 0, 32768, integer=True),
    "n": Limit(1, 1, 128, integer=True),
    "top_logprobs": Limit(None, 0, 20, integer=True),
    "thinking_budget": Limit(None, 1024, 32768, integer=True),
}
DEFAULT_MAX_TOKENS = int(PARAMETERS["max_tokens"].default or 0)


@dataclass(frozen=True)
class Sampling:
    """Sampler controls of one request, every default the product's (see PARAMETERS)."""

    n: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 20
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: Mapping[int, float] | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0


_SAMPLING_NUMBERS = (
    "n", "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "seed", "min_tokens",
)


def check_number(name: str, value: Any, spelling: Mapping[str, str] | None = None) -> float | int | None:
    """`value` checked against the table (None stays None); raises InvalidRequestError naming the caller's field."""
    if value is None:
        return None
    param = (spelling or {}).get(name, name)
    limit = PARAMETERS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if limit.integer else "a number"
        raise InvalidRequestError(f"{param} must be {kind}", param=param, code="invalid_type")
    if limit.integer and not isinstance(value, int):  # 16.0 or 6.97e16 is a float: refused, never truncated
        raise InvalidRequestError(f"{param} must be an integer", param=param, code="invalid_type")
    if not math.isfinite(value):
        raise InvalidRequestError(limit.describe(param), param=param, code="invalid_value")
    if limit.disabled is not None and value == limit.disabled:
        return int(value)
    below = value <= limit.low if limit.low_open else value < limit.low
    if below or value > limit.high:
        raise InvalidRequestError(f"{limit.describe(param)}, got {value}", param=param, code="invalid_value")
    return int(value) if limit.integer else float(value)


def resolve(name: str, value: Any, spelling: Mapping[str, str] | None = None) -> Any:
    """Checked value, or the table's default when omitted."""
    checked = check_number(name, value, spelling)
    return PARAMETERS[name].default if checked is None else checked


def resolve_stop(value: Any, param: str = "stop") -> tuple[str, ...]:
    """A string or a list of at most MAX_STOP non-empty strings."""
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) for s in stops):
        raise InvalidRequestError(f"{param} must be a string or a list of strings", param=param, code="invalid_type")
    if len(stops) > MAX_STOP:
        raise InvalidRequestError(f"{param} accepts at most {MAX_STOP} sequences", param=param, code="invalid_value")
    if any(not s for s in stops):
        raise InvalidRequestError(f"{param} sequences must be non-empty strings", param=param, code="invalid_value")
    return tuple(stops)


def resolve_logit_bias(value: Mapping[str, float] | None, param: str = "logit_bias") -> dict[int, float] | None:
    if not value:
        return None
    if len(value) > MAX_LOGIT_BIAS_ENTRIES:
        raise InvalidRequestError(f"{param} accepts at most {MAX_LOGIT_BIAS_ENTRIES} entries", param=param)
    out: dict[int, float] = {}
    for token, bias in value.items():
        if not _TOKEN_ID.fullmatch(str(token)):
            raise InvalidRequestError(f"{param} keys must be token ids, got {token!r}", param=param)
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS:
            raise InvalidRequestError(f"{param} values must be numbers between -100 and 100", param=param)
        out[int(token)] = float(bias)
    return out


def resolve_sampling(values: Mapping[str, Any], spelling: Mapping[str, str] | None = None) -> Sampling:
    """The request's sampler controls from product names -> sent values (None or absent: the default).

    Recognised names: the numeric ones of PARAMETERS used by the sampler, `stop`, `logit_bias`, `stop_token_ids`,
    `include_stop_str_in_output`, `ignore_eos`. `spelling` maps a product name to the caller's field name."""
    spelling = spelling or {}
    numbers = {name: resolve(name, values.get(name), spelling) for name in _SAMPLING_NUMBERS}
    stop_param = spelling.get("stop", "stop")
    return Sampling(
        n=int(numbers["n"]),
        temperature=float(numbers["temperature"]),
        top_p=float(numbers["top_p"]),
        top_k=int(numbers["top_k"]),
        min_p=float(numbers["min_p"]),
        presence_penalty=float(numbers["presence_penalty"]),
        frequency_penalty=float(numbers["frequency_penalty"]),
        repetition_penalty=float(numbers["repetition_penalty"]),
        seed=None if numbers["seed"] is None else int(numbers["seed"]),
        min_tokens=int(numbers["min_tokens"]),
        stop=resolve_stop(values.get("stop"), stop_param),
        logit_bias=resolve_logit_bias(values.get("logit_bias"), spelling.get("logit_bias", "logit_bias")),
        stop_token_ids=tuple(int(t) for t in values.get("stop_token_ids") or ()),
        include_stop_str_in_output=bool(values.get("include_stop_str_in_output") or False),
        ignore_eos=bool(values.get("ignore_eos") or False),
    )


def resolve_max_tokens(value: Any, param: str = "max_tokens", default: int | None = DEFAULT_MAX_TOKENS) -> int | None:
    """The output limit (reasoning + answer), checked; `default` when omitted."""
    checked = check_number("max_tokens", value, {"max_tokens": param})
    return default if checked is None else int(checked)
