"""Serving events -> legacy Completions bodies (`text_completion`, streamed with the same object type).

Owns the legacy logprobs object (tokens, token_logprobs, top_logprobs with the sampled token always present,
text_offset), echo of the prompt (with prompt logprobs, None for the first token) and the choice numbering
(prompt p, sample s -> index p*n + s). Imports serving events and the chat usage mapping.
Invariant: text_offset[i] is the character offset of token i in the choice's full text (echo included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen35.api.openai.chat_render import finish_reason, usage_dict
from qwen35.serving.events import Finished, ServingEvent, TextDelta, TokenLogprob, Usage


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)
    offset: int = 0
    finish: str | None = None


@dataclass(frozen=True)
class Echo:
    """The prompt as echoed: its text and, when logprobs were asked, one entry per prompt token."""

    text: str
    entries: tuple[tuple[str, float | None, dict[str, float] | None], ...] = ()


def make_echo(text: str, token_texts: Sequence[str], logprobs: Sequence[TokenLogprob | None] | None) -> Echo:
    if logprobs is None:
        return Echo(text)
    entries = []
    for position, token in enumerate(token_texts):
        lp = logprobs[position] if position < len(logprobs) else None
        entries.append((token, None, None) if lp is None else (token, lp.logprob, _top(lp)))
    return Echo(text, tuple(entries))


def _top(lp: TokenLogprob) -> dict[str, float]:
    top = {token: value for token, _tid, value, _b in lp.top_logprobs}
    top.setdefault(lp.token, lp.logprob)  # the sampled token is always reported (up to logprobs+1 entries)
    return top


class CompletionRenderer:
    """Accumulates (non-stream) or chunks (stream) the choices of one completion request."""

    def __init__(
        self, completion_id: str, created: int, model: str, fingerprint: str, n: int, echoes: Sequence[Echo | None],
        want_logprobs: bool, include_usage: bool = False,
    ) -> None:
        self._base = {"id": completion_id, "object": "text_completion", "created": created, "model": model,
                      "system_fingerprint": fingerprint}
        self._n = n
        self._echoes = list(echoes)
        self._want_logprobs = want_logprobs
        self._include_usage = include_usage
        self._choices = [_Choice() for _ in range(n * len(self._echoes))]

    def index(self, prompt_index: int, sample_index: int) -> int:
        return prompt_index * self._n + sample_index

    # -- accumulation (both modes) ------------------------------------------------------------------------------

    def start(self) -> list[dict[str, Any]]:
        """Record the echoed prompts; returns the first stream chunk of each echoing choice."""
        chunks = []
        for p, echo in enumerate(self._echoes):
            if echo is None:
                continue
            for s in range(self._n):
                i = self.index(p, s)
                self._append(i, echo.text, echo.entries)
                chunks.append(self._chunk(i, echo.text, self._entries_dict(echo.entries)))
        return chunks

    def on_event(self, prompt_index: int, event: ServingEvent) -> list[dict[str, Any]]:
        i = self.index(prompt_index, event.index)
        if isinstance(event, TextDelta):
            entries = tuple((lp.token, lp.logprob, _top(lp)) for lp in event.logprobs)
            self._append(i, event.text, entries)
            if not event.text and not entries:
                return []
            return [self._chunk(i, event.text, self._entries_dict(entries, self._choices[i].offset - len(event.text)))]
        if isinstance(event, Finished):
            self._choices[i].finish = finish_reason(event.reason)
            return [self._chunk(i, "", None, self._choices[i].finish)]
        return []

    def _append(self, i: int, text: str, entries: Sequence[tuple[str, float | None, dict[str, float] | None]]) -> None:
        choice = self._choices[i]
        offset = choice.offset
        for token, logprob, top in entries:
            choice.tokens.append(token)
            choice.token_logprobs.append(logprob)
            choice.top_logprobs.append(top)
            choice.text_offset.append(offset)
            offset += len(token)
        choice.text.append(text)
        choice.offset += len(text)

    def _entries_dict(
        self, entries: Sequence[tuple[str, float | None, dict[str, float] | None]], start: int = 0
    ) -> dict[str, Any] | None:
        if not self._want_logprobs:
            return None
        offsets, offset = [], start
        for token, _lp, _top_lp in entries:
            offsets.append(offset)
            offset += len(token)
        return {
            "tokens": [e[0] for e in entries],
            "token_logprobs": [e[1] for e in entries],
            "top_logprobs": [e[2] for e in entries],
            "text_offset": offsets,
        }

    # -- wire shapes ----------------------------------------------------------------------------------------------

    def _chunk(self, i: int, text: str, logprobs: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        out = {**self._base, "choices": [{"text": text, "index": i, "logprobs": logprobs, "finish_reason": finish}]}
        if self._include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return {**self._base, "choices": [], "usage": usage_dict(usage)}

    def body(self, usage: Usage) -> dict[str, Any]:
        choices = []
        for i, choice in enumerate(self._choices):
            logprobs = None
            if self._want_logprobs:
                logprobs = {
                    "tokens": choice.tokens,
                    "token_logprobs": choice.token_logprobs,
                    "top_logprobs": choice.top_logprobs,
                    "text_offset": choice.text_offset,
                }
            choices.append(
                {"text": "".join(choice.text), "index": i, "logprobs": logprobs, "finish_reason": choice.finish or "stop"}
            )
        return {**self._base, "choices": choices, "usage": usage_dict(usage)}
