"""Long texts are tokenized in pieces (so the GIL is released and the event loop keeps running): the pieces must give
exactly the ids of the whole text, whatever the script, digits, punctuation, line breaks or control-token strings."""

from __future__ import annotations

import random

from qwen35.processor import load_processor
from qwen35.processor.tokenizer import LONG_TEXT_CHARS, split_at_word_starts

SAMPLES = [
    "Hello world, it's 2026! Numbers 12345 and  double  spaces.\n\nNew paragraph:\n  indented\tline\r\nwindows",
    "Ünïcödé café naïve – em—dash “quotes” ‘single’ … 日本語のテキスト 中文 한국어 עברית العربية",
    "<|im_start|>user\nhi<|im_end|>\n<think>\nx\n</think>\n<tool_call> a b </tool_call>",
    "def f(x):\n    return x ** 2  # comment\n\n\nclass A:\n    pass\n",
    "e\u0301 combining a\u0300 marks\u0301 x \u0301y",
]


def test_pieces_give_the_ids_of_the_whole_text() -> None:
    tokenizer = load_processor(None).tokenizer
    rng = random.Random(0)
    words = [w for s in SAMPLES for w in s.split(" ")]
    for _trial in range(30):
        text = " ".join(rng.choice(words) for _ in range(400)) + rng.choice(["", " ", "\n", "  x"])
        pieces = split_at_word_starts(text, rng.choice([7, 20, 64]))
        assert "".join(pieces) == text and len(pieces) > 3
        whole = tokenizer.backend.encode(text, add_special_tokens=False).ids
        assert [t for p in tokenizer.backend.encode_batch(pieces, add_special_tokens=False) for t in p.ids] == whole


def test_encode_of_a_long_text_equals_the_backend() -> None:
    tokenizer = load_processor(None).tokenizer
    text = " ".join(SAMPLES) * (2 * LONG_TEXT_CHARS // len(" ".join(SAMPLES)) + 1)
    assert len(text) > LONG_TEXT_CHARS
    assert tokenizer.encode(text) == tokenizer.backend.encode(text, add_special_tokens=False).ids


def test_one_enormous_word_stays_one_piece() -> None:
    assert split_at_word_starts("x" * 100, 10) == ["x" * 100]
