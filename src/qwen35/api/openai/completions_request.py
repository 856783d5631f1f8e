"""Legacy Completions request (`POST /v1/completions`): types and conversion to GenerationRequests.

Owns the body model (prompt as text, texts, token ids or lists of token ids; echo; int logprobs; suffix for
fill-in-the-middle with Qwen's FIM tokens) and the one-GenerationRequest-per-prompt conversion. Imports
api.openai.params and serving request types; the tokenizer is passed in. Invariant: completions never think and
never parse output: the text the model wrote is returned as is (raw_output).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from qwen35.api.openai.params import SamplingFields, field_error
from qwen35.serving.errors import InvalidRequestError
from qwen35.serving.request import GenerationRequest
from qwen35.serving.sampling import check_number, resolve_max_tokens

MAX_PROMPTS = 256
# The thinking controls of the chat APIs: a raw prompt never thinks, so they are refused rather than ignored.
CHAT_ONLY = ("enable_thinking", "reasoning_effort", "thinking_budget", "chat_template_kwargs", "tools", "messages")


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    suffix: str | None = None
    max_tokens: int | None = None
    logprobs: int | None = None
    echo: bool = False
    best_of: int | None = Field(None, ge=1, le=128)
    skip_special_tokens: bool = True

    @model_validator(mode="after")
    def _check_completion(self) -> CompletionRequest:
        resolve_max_tokens(self.max_tokens)
        check_number("top_logprobs", self.logprobs, {"top_logprobs": "logprobs"})
        for name in CHAT_ONLY:
            if name in (self.model_extra or {}):
                raise field_error(name, f"{name} is not supported by /v1/completions (a raw prompt never thinks or "
                                        "calls tools); use /v1/chat/completions")
        if self.best_of is not None and self.best_of != self.n:
            raise field_error("best_of", "best_of other than n is not supported; use n")
        if self.echo and self.suffix is not None:
            raise field_error("suffix", "suffix cannot be combined with echo")
        prompts = self.prompt_list()
        if not prompts:
            raise field_error("prompt", "prompt must not be empty")
        if len(prompts) > MAX_PROMPTS:
            raise field_error("prompt", f"at most {MAX_PROMPTS} prompts per request")
        return self

    def prompt_list(self) -> list[str | list[int]]:
        """Every prompt of the request as text or token ids."""
        prompt: Any = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(p, int) for p in prompt):
            return [list(prompt)]
        return list(prompt)


def to_generation_requests(body: CompletionRequest, request_id: str, tokenizer: Any) -> list[GenerationRequest]:
    """One GenerationRequest per prompt (choices of prompt p get indexes p*n .. p*n+n-1)."""
    out = []
    for p, prompt in enumerate(body.prompt_list()):
        ids = _prompt_ids(prompt, body.suffix, tokenizer, p)
        out.append(
            GenerationRequest(
                request_id=f"{request_id}-{p}",
                prompt_token_ids=tuple(ids),
                max_tokens=resolve_max_tokens(body.max_tokens),
                logprobs=body.logprobs,
                prompt_logprobs=body.logprobs if body.echo and body.logprobs is not None else None,
                raw_output=True,
                skip_special_tokens=body.skip_special_tokens,
                sampling=body.sampling(),
            )
        )
    return out


def _prompt_ids(prompt: str | list[int], suffix: str | None, tokenizer: Any, position: int) -> list[int]:
    param = "prompt" if position == 0 else f"prompt[{position}]"
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
    if suffix is not None:
        special = tokenizer.special_ids
        ids = [special.fim_prefix, *ids, special.fim_suffix, *tokenizer.encode(suffix), special.fim_middle]
    if not ids:
        raise InvalidRequestError("The prompt is empty", param=param)
    vocab = tokenizer.vocab_size
    for token in ids:
        if not 0 <= token < vocab:
            raise InvalidRequestError(f"Token id {token} is outside the vocabulary [0, {vocab})", param=param)
    return ids
