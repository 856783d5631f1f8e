"""Control-token safety: text from clients never becomes a control token.

The chat template mixes its own markers (`<|im_start|>`, `<|im_end|>`, `<tool_response>`, `<|vision_start|>` ...)
with client text (message content, reasoning, tool schemas and results). Tokenizing the rendered string as a whole
(what transformers and vLLM do) turns a `<|im_end|>` typed by a user into the real turn boundary: a user can forge
a system or assistant turn. Here every added-token string in client text is escaped before rendering (a
private-use sentinel after its first character, so the template's trims and string tests see the same text but no
marker), the rendered prompt is split at the markers that remain, which are the template's own, and the text
between them is unescaped and tokenized as plain text (the BPE model alone, no added-token matching): a typed
`<|im_end|>` becomes `<`, `|`, `im`, `_end`, `|>`, the characters the user sent.

Text without any added-token string gives exactly the ids of whole-string tokenization (the backend also splits at
added tokens before its pre-tokenizer). One exception keeps the template working: `<think>` / `</think>` in an
assistant message's content stay markers, because the template itself splits earlier reasoning out of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

SENTINEL = "\ue000"  # private use: no tokenizer merges it with its neighbours in a way that matters (it is removed)
_UNESCAPE = re.compile(SENTINEL + "(" + SENTINEL + "?)")
_ASSISTANT_MARKERS = frozenset({"<think>", "</think>"})


class ControlTokenGuard:
    """Escapes client text before rendering and tokenizes the rendered prompt marker by marker."""

    def __init__(self, markers: Mapping[str, int], encode_plain: Callable[[str], list[int]]) -> None:
        """`markers`: every added-token string -> id; `encode_plain`: ids of text with no added-token matching."""
        self._ids = dict(markers)
        self._encode_plain = encode_plain
        self._all = _alternation(self._ids)
        self._user = _alternation(t for t in self._ids if t not in _ASSISTANT_MARKERS)

    # -- before rendering ------------------------------------------------------------------------------------

    def escape_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Copies of the messages with every added-token string in their text escaped (assistant content keeps
        `<think>` / `</think>`: the template parses earlier reasoning out of them)."""
        out: list[Any] = []
        for message in messages:
            if not isinstance(message, Mapping):
                out.append(message)  # the template reports the bad shape
                continue
            escaped = {}
            for key, value in message.items():
                pattern = self._user if message.get("role") == "assistant" and key == "content" else self._all
                escaped[self._escape_str(key, self._all)] = self._escape(value, pattern)
            out.append(escaped)
        return out

    def escape_tools(self, tools: Sequence[Mapping[str, Any]] | None) -> list[Any] | None:
        return None if tools is None else [self._escape(tool, self._all) for tool in tools]

    def _escape(self, value: Any, pattern: re.Pattern[str] | None) -> Any:
        if isinstance(value, str):
            return self._escape_str(value, pattern)
        if isinstance(value, Mapping):
            return {self._escape_str(k, pattern): self._escape(v, pattern) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._escape(v, pattern) for v in value]
        return value  # numbers, None, media parts

    @staticmethod
    def _escape_str(text: Any, pattern: re.Pattern[str] | None) -> Any:
        if not isinstance(text, str) or pattern is None or ("<" not in text and SENTINEL not in text):
            return text
        text = text.replace(SENTINEL, SENTINEL + SENTINEL)  # a sentinel the client sent survives unescaping
        return pattern.sub(lambda m: m.group(0)[0] + SENTINEL + m.group(0)[1:], text)

    # -- after rendering -------------------------------------------------------------------------------------

    def encode(self, rendered: str) -> list[int]:
        """Ids of a prompt rendered from escaped input: markers left in it are the template's; the rest is text."""
        if self._all is None:
            return self._encode_plain(_unescape(rendered))
        ids: list[int] = []
        at = 0
        for match in self._all.finditer(rendered):
            if match.start() > at:
                ids.extend(self._encode_plain(_unescape(rendered[at : match.start()])))
            ids.append(self._ids[match.group(0)])
            at = match.end()
        if at < len(rendered):
            ids.extend(self._encode_plain(_unescape(rendered[at:])))
        return ids


def _alternation(tokens: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(tokens), key=len, reverse=True)  # longest first: no marker is cut by a shorter one
    return re.compile("|".join(re.escape(t) for t in ordered)) if ordered else None


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text) if SENTINEL in text else text
