"""Incremental detokenizer: generated token ids in, text deltas out, never a broken UTF-8 character.

Owns the byte buffer between tokens and a character boundary. Must not import torch, engine, serving or api.
Key invariant: the concatenation of every `add()` result and `flush()` equals
`tokenizer.decode(all_ids, skip_special_tokens=...)` with the `keep_ids` counted as not special (the output
parser's control tokens are text whatever the checkpoint's flags), and each call costs O(new tokens), not O(all).
"""

from __future__ import annotations

import codecs
from collections.abc import Collection, Iterable
from typing import Protocol


class TokenBytes(Protocol):
    """What the detokenizer needs from a tokenizer (qwen35.processor.tokenizer.Tokenizer provides it)."""

    def token_bytes(self, token_id: int) -> bytes: ...

    def is_special(self, token_id: int) -> bool: ...


class IncrementalDetokenizer:
    """Turns a growing sequence of token ids into text deltas.

    A byte-level BPE token can end in the middle of a multi-byte character (emoji and CJK often span two or
    three tokens); those bytes are held until the character completes. Invalid sequences become U+FFFD exactly
    as a whole-sequence lossy decode would (Python's and tokenizers' replacement rules agree: one U+FFFD per
    maximal invalid subpart).

    `keep_ids` are never skipped, even when the tokenizer flags them special: a checkpoint that marks `</think>`
    special must not lose it from the stream the output parser reads.
    """

    def __init__(
        self, tokenizer: TokenBytes, skip_special_tokens: bool = True, keep_ids: Collection[int] = ()
    ) -> None:
        self._tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self._keep = frozenset(keep_ids)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.num_tokens = 0

    def add(self, ids: Iterable[int]) -> str:
        """Text completed by these tokens (possibly empty while a character is still incomplete)."""
        pieces: list[bytes] = []
        for token_id in ids:
            self.num_tokens += 1
            if self.skip_special_tokens and token_id not in self._keep and self._tokenizer.is_special(token_id):
                continue
            pieces.append(self._tokenizer.token_bytes(token_id))
        if not pieces:
            return ""
        return self._decoder.decode(b"".join(pieces))

    def add_one(self, token_id: int) -> str:
        return self.add((token_id,))

    @property
    def has_pending(self) -> bool:
        """True while bytes of an incomplete character are held back."""
        return bool(self._decoder.getstate()[0])

    def flush(self) -> str:
        """End of stream: held-back bytes of a character that never completed become U+FFFD."""
        return self._decoder.decode(b"", final=True)
