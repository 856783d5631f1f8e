"""Reasoning / answer boundaries by token id, end to end on the real engine.

The tiny random checkpoint is re-shipped the way many community conversions are: its tokenizer.json marks
`<think>` and `</think>` `"special": true`, so a detokenizer skipping special tokens drops `</think>`. The thinking
budget forces `</think>` after a few tokens, and Chat Completions, Messages and Responses must still split the
reasoning from the answer at that token, with usage that agrees with the split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from qwen35.processor import Processor
from scripted_app import running_real_app

MODEL = "qwen3-5-4b"
QUESTION = [{"role": "user", "content": "Name a colour."}]
# Thinking on (the default budget shrinks to fit): max_tokens // 2 is kept for the answer and the wind-down text
# does not fit in the rest, so the engine forces `</think>` alone after MAX_TOKENS // 2 - 1 reasoning tokens.
MAX_TOKENS = 24
FLAGGED = ("<think>", "</think>")
# Greedy decoding on a random model repeats one token ("\n", then "</think>" forever); seeded sampling gives
# distinct text on both sides of the boundary, the same on every API (same prompt, same seed).
SEED = 1


def _flag_think_tokens(source: Path, target: Path) -> Path:
    """A copy of `source` (weights linked) whose tokenizer files mark <think> / </think> special."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name not in ("tokenizer.json", "tokenizer_config.json"):
            os.symlink(entry, target / entry.name)
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    for added in tokenizer["added_tokens"]:
        if added["content"] in FLAGGED:
            added["special"] = True
    (target / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    for added in config["added_tokens_decoder"].values():
        if added["content"] in FLAGGED:
            added["special"] = True
    (target / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target


@dataclass
class Real:
    openai: openai.OpenAI
    anthropic: anthropic.Anthropic
    processor: Processor


@pytest.fixture(scope="module")
def real(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    checkpoint = _flag_think_tokens(tiny_checkpoint, tmp_path_factory.mktemp("flagged-think") / "ckpt")
    with running_real_app(checkpoint, tmp_path_factory.mktemp("boundaries-platform")) as app:
        yield Real(
            openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=app.secret, max_retries=0,
                          _strict_response_validation=True),
            anthropic.Anthropic(base_url=app.base_url, api_key=app.secret, max_retries=0,
                                _strict_response_validation=True),
            app.processor,
        )


def test_the_checkpoint_flags_think_tokens_special(real: Real) -> None:
    tokenizer = real.processor.tokenizer
    ids = real.processor.special_ids
    assert tokenizer.is_special(ids.think_start) and tokenizer.is_special(ids.think_end)
    assert tokenizer.decode([ids.think_end], skip_special_tokens=True) == ""  # what used to swallow the answer


def _check_split(answer: str, reasoning: str, reasoning_tokens: int, output_tokens: int) -> None:
    assert answer.strip() and reasoning.strip()
    assert answer not in reasoning and reasoning not in answer
    for tag in FLAGGED:
        assert tag not in answer and tag not in reasoning
    # the forced </think> came after MAX_TOKENS // 2 - 1 reasoning tokens; it counts as reasoning
    assert reasoning_tokens == MAX_TOKENS // 2
    assert 0 < output_tokens - reasoning_tokens <= MAX_TOKENS - MAX_TOKENS // 2


def test_chat_completions_split_at_the_forced_think_end(real: Real) -> None:
    completion = real.openai.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=MAX_TOKENS, temperature=1.0, seed=SEED,  # type: ignore[arg-type]
        logprobs=True, extra_body={"ignore_eos": True},
    )
    message = completion.choices[0].message
    answer, reasoning = message.content or "", getattr(message, "reasoning_content", None) or ""
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    reasoning_tokens = usage.completion_tokens_details.reasoning_tokens or 0
    _check_split(answer, reasoning, reasoning_tokens, usage.completion_tokens)
    assert usage.completion_tokens == MAX_TOKENS and completion.choices[0].finish_reason == "length"
    # logprobs cover the answer tokens: every token after the </think> (a "\n\n" separator right after it aside)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert "".join(t.token for t in logprobs.content) == answer
    assert 0 < len(logprobs.content) <= MAX_TOKENS - reasoning_tokens


def _chat(real: Real) -> tuple[str, str, Any]:
    completion = real.openai.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=MAX_TOKENS, temperature=1.0, seed=SEED,  # type: ignore[arg-type]
    )
    message = completion.choices[0].message
    return message.content or "", getattr(message, "reasoning_content", None) or "", completion.usage


def test_messages_split_at_the_forced_think_end(real: Real) -> None:
    message = real.anthropic.messages.create(
        model=MODEL, messages=QUESTION, max_tokens=MAX_TOKENS,  # type: ignore[arg-type]
        extra_body={"temperature": 1.0, "seed": SEED},
    )
    answer = "".join(b.text for b in message.content if b.type == "text")
    reasoning = "".join(b.thinking for b in message.content if b.type == "thinking")
    assert [b.type for b in message.content][:2] == ["thinking", "text"]
    details = message.usage.output_tokens_details  # type: ignore[attr-defined]
    _check_split(answer, reasoning, details.thinking_tokens, message.usage.output_tokens)
    chat_answer, chat_reasoning, chat_usage = _chat(real)
    assert (answer, reasoning) == (chat_answer, chat_reasoning)
    assert details.thinking_tokens == chat_usage.completion_tokens_details.reasoning_tokens


def test_responses_split_at_the_forced_think_end(real: Real) -> None:
    response = real.openai.responses.create(
        model=MODEL, input="Name a colour.", max_output_tokens=MAX_TOKENS, temperature=1.0, extra_body={"seed": SEED},
    )
    reasoning = "".join(c.text for item in response.output if item.type == "reasoning" for c in item.content or [])
    assert response.usage is not None
    reasoning_tokens = response.usage.output_tokens_details.reasoning_tokens
    _check_split(response.output_text, reasoning, reasoning_tokens, response.usage.output_tokens)
    chat_answer, chat_reasoning, chat_usage = _chat(real)
    assert (response.output_text, reasoning) == (chat_answer, chat_reasoning)
    assert reasoning_tokens == chat_usage.completion_tokens_details.reasoning_tokens
