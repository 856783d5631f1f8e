"""Incremental detokenizer: deltas concatenate to a full decode, never split a character, cost O(new tokens)."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from qwen35.processor.detokenizer import IncrementalDetokenizer
from qwen35.processor.tokenizer import Tokenizer

TEXTS = [
    "Emoji 🧬🧪👨‍👩‍👧‍👦🇫🇷 mixed with 中文字符和日本語のかな and 한국어.",
    "<|im_start|>assistant\n<think>\n思考 🙂\n</think>\n\nAnswer: ok<|im_end|>",
    "plain ascii text, nothing special at all",
]


def _stream(tokenizer: Tokenizer, ids: list[int], skip: bool, chunk_sizes: list[int]) -> list[str]:
    detok = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip)
    deltas, pos, k = [], 0, 0
    while pos < len(ids):
        size = chunk_sizes[k % len(chunk_sizes)]
        deltas.append(detok.add(ids[pos : pos + size]))
        pos, k = pos + size, k + 1
    deltas.append(detok.flush())
    return deltas


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("chunks", [[1], [2], [3, 1], [5, 2, 1]])
def test_deltas_concatenate_to_decode(tokenizer: Tokenizer, text: str, skip: bool, chunks: list[int]) -> None:
    ids = tokenizer.encode(text)
    deltas = _stream(tokenizer, ids, skip, chunks)
    assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=skip)
    assert all("\ufffd" not in d for d in deltas)  # never half a character


def test_multi_token_character_is_held_until_complete(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("🧬")
    assert len(ids) > 1
    detok = IncrementalDetokenizer(tokenizer)
    out = [detok.add([i]) for i in ids]
    assert out[:-1] == [""] * (len(ids) - 1) and out[-1] == "🧬"
    assert not detok.has_pending


def test_invalid_bytes_match_lossy_decode(tokenizer: Tokenizer) -> None:
    rng = random.Random(5)
    candidates = (i for i in range(tokenizer.vocab_size - 33) if not _valid_utf8(tokenizer.token_bytes(i)))
    pieces = list(itertools.islice(candidates, 300))
    for _ in range(50):
        ids = [rng.choice(pieces) for _ in range(rng.randint(1, 6))] + tokenizer.encode(" ok")
        assert "".join(_stream(tokenizer, ids, True, [1])) == tokenizer.decode(ids)
    detok = IncrementalDetokenizer(tokenizer)
    first = tokenizer.encode("🧬")[0]
    assert detok.add([first]) == "" and detok.has_pending
    assert detok.flush() == tokenizer.decode([first])  # an unfinished character becomes U+FFFD at the end


def _valid_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_random_token_streams(tokenizer: Tokenizer) -> None:
    rng = random.Random(11)
    for _ in range(100):
        # Over the model's padded vocabulary (248320 rows), padding ids included on purpose.
        ids = [rng.randrange(tokenizer.vocab_size - 40, 248320) if rng.random() < 0.2 else rng.randrange(248320)
               for _ in range(rng.randint(1, 30))]  # fmt: skip
        for skip in (True, False):
            assert "".join(_stream(tokenizer, ids, skip, [rng.randint(1, 4)])) == tokenizer.decode(ids, skip)


def test_cost_per_token_does_not_grow(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("word 字 🙂 " * 4000)
    detok = IncrementalDetokenizer(tokenizer)
    start = time.perf_counter()
    for i in ids[:2000]:
        detok.add([i])
    early = time.perf_counter() - start
    for i in ids[2000:-2000]:
        detok.add([i])
    start = time.perf_counter()
    for i in ids[-2000:]:
        detok.add([i])
    late = time.perf_counter() - start
    assert detok.num_tokens == len(ids)
    assert late < early * 3 + 0.05  # O(total) would make the late tokens many times slower


def test_keep_ids_are_never_skipped_and_keep_their_place(tokenizer: Tokenizer) -> None:
    think_end = tokenizer.special_ids.think_end

    class Flagged:  # a checkpoint whose tokenizer marks </think> special
        def token_bytes(self, token_id: int) -> bytes:
            return tokenizer.token_bytes(token_id)

        def is_special(self, token_id: int) -> bool:
            return token_id == think_end or tokenizer.is_special(token_id)

    dna = tokenizer.encode("🧬")
    assert len(dna) == 3  # one character over three tokens
    ids = [*tokenizer.encode("a"), *dna, think_end, *tokenizer.encode("\n\nok<|im_end|>")]
    skipping = IncrementalDetokenizer(Flagged())
    assert "".join(skipping.add([i]) for i in ids) + skipping.flush() == "a🧬\n\nok"
    keeping = IncrementalDetokenizer(Flagged(), keep_ids={think_end})
    deltas = [keeping.add([i]) for i in ids] + [keeping.flush()]
    # a decode that does not count </think> special; the kept tag arrives with its own token, in place
    assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=True) == "a🧬</think>\n\nok"
    assert deltas[1 + len(dna)] == "</think>"
