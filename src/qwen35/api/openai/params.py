"""Sampling and extension parameters shared by Chat Completions and legacy Completions (request side).

Owns the server's defaults and ranges for every sampler control, the qwen35 extensions (accepted at the top level
and inside a literal `extra_body` object), and their conversion into GenerationRequest keyword arguments.
Imports pydantic and serving types only. Invariant: every range is checked here, at the edge, so a 400 names the
parameter; `None` in a request means "use the server default below".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qwen35.serving.errors import InvalidRequestError

# Server defaults (the seed's parameter table).
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 20
DEFAULT_MIN_P = 0.0
DEFAULT_REPETITION_PENALTY = 1.0
MAX_OUTPUT_TOKENS = 32768
MAX_SEED = 2147483647
MAX_STOP = 4
MAX_LOGPROBS = 20

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class StrictModel(BaseModel):
    """Strict types (no "0.5" -> 0.5 or true -> 1 coercion); unknown fields are accepted and ignored, as the
    SDKs only send them through extra_body."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


class StreamOptions(StrictModel):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class SamplingFields(StrictModel):
    """Fields both endpoints take. Range errors name the field (pydantic loc -> OpenAI `param`)."""

    model: str
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, le=200)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, ge=0.1, le=2.0)
    logit_bias: dict[str, float] | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    user: str | None = None
    ignore_eos: bool = False
    min_tokens: int = Field(0, ge=0, le=MAX_OUTPUT_TOKENS)
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False

    @model_validator(mode="before")
    @classmethod
    def _merge_extra_body(cls, data: Any) -> Any:
        """Clients that put a literal "extra_body" object in the JSON get it merged (the SDKs merge it already)."""
        if isinstance(data, dict) and isinstance(data.get("extra_body"), dict):
            merged = {k: v for k, v in data.items() if k != "extra_body"}
            merged.update(data["extra_body"])
            return merged
        return data

    @model_validator(mode="after")
    def _check_shared(self) -> SamplingFields:
        if self.top_k == 0:
            raise field_error("top_k", "top_k must be between 1 and 200 (or -1 to disable)")
        stops = self.stop_list()
        if len(stops) > MAX_STOP:
            raise field_error("stop", f"stop accepts at most {MAX_STOP} sequences")
        if any(not s for s in stops):
            raise field_error("stop", "stop sequences must be non-empty strings")
        if self.stream_options is not None and not self.stream:
            raise field_error("stream_options", "stream_options is only allowed when stream is true")
        if self.logit_bias:
            for token, bias in self.logit_bias.items():
                if not token.lstrip("-").isdigit():
                    raise field_error("logit_bias", f"logit_bias keys must be token ids, got {token!r}")
                if not -100.0 <= bias <= 100.0:
                    raise field_error("logit_bias", "logit_bias values must be between -100 and 100")
        return self

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options is not None and self.stream_options.include_usage)

    def sampling_kwargs(self) -> dict[str, Any]:
        """GenerationRequest keyword arguments for the sampler controls, defaults applied."""
        return {
            "n": self.n,
            "temperature": DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
            "top_p": DEFAULT_TOP_P if self.top_p is None else self.top_p,
            "top_k": DEFAULT_TOP_K if self.top_k is None else self.top_k,
            "min_p": DEFAULT_MIN_P if self.min_p is None else self.min_p,
            "presence_penalty": self.presence_penalty or 0.0,
            "frequency_penalty": self.frequency_penalty or 0.0,
            "repetition_penalty": (
                DEFAULT_REPETITION_PENALTY if self.repetition_penalty is None else self.repetition_penalty
            ),
            "logit_bias": {int(k): float(v) for k, v in (self.logit_bias or {}).items()} or None,
            "seed": self.seed,
            "stop": tuple(self.stop_list()),
            "stop_token_ids": tuple(self.stop_token_ids or ()),
            "include_stop_str_in_output": self.include_stop_str_in_output,
            "ignore_eos": self.ignore_eos,
            "min_tokens": self.min_tokens,
        }


def field_error(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_value")
