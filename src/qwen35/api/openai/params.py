"""Sampling and extension parameters shared by Chat Completions and legacy Completions (request side).

Owns the field types of every sampler control and the qwen35 extensions (accepted at the top level and inside a
literal `extra_body` object), and their conversion into one `serving.sampling.Sampling`. Imports pydantic and
serving types only. Invariant: ranges and defaults come from serving.sampling's table (one for every API), so a
400 names the parameter; `None` in a request means "use the product default".
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.sampling import Sampling, resolve_sampling

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class StrictModel(BaseModel):
    """Strict types (no "0.5" -> 0.5 or true -> 1 coercion); unknown fields are accepted and ignored, as the
    SDKs only send them through extra_body."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


class StreamOptions(StrictModel):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class SamplingFields(StrictModel):
    """Fields both endpoints take: types here (pydantic loc -> OpenAI `param`), ranges and defaults in the
    product's one table (serving.sampling), so every API checks and defaults them alike."""

    _sampling: Sampling = PrivateAttr(default_factory=Sampling)
    merges_extra_body: ClassVar[bool] = True

    model: str
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    ignore_eos: bool = False
    min_tokens: int | None = None
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
        if self.stream_options is not None and not self.stream:
            raise field_error("stream_options", "stream_options is only allowed when stream is true")
        self._sampling = resolve_sampling(self.model_dump(include=set(SAMPLING_FIELDS)))
        return self

    def sampling(self) -> Sampling:
        """The sampler controls, checked and defaulted by the product's one table (serving.sampling)."""
        return self._sampling

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options is not None and self.stream_options.include_usage)


SAMPLING_FIELDS = (
    "n", "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "logit_bias", "seed", "stop", "stop_token_ids", "include_stop_str_in_output", "ignore_eos", "min_tokens",
)


def field_error(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_value")
