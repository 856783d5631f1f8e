"""Fixtures for serving-core tests: the real processor (built-in tokenizer + template) and a scripted engine."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qwen35.processor import Processor, load_processor
from qwen35.serving.core import ServingCore
from scripted_engine import ScriptedEngine


@pytest.fixture(scope="session")
def processor() -> Processor:
    return load_processor(None)


@pytest.fixture
def make_core(processor: Processor) -> Callable[..., tuple[ServingCore, ScriptedEngine]]:
    """make_core(*texts, **engine_kwargs): a core whose engine answers every request with these texts
    (one per sample; control tokens like <|im_end|> in the text become their ids)."""

    def build(*texts: str, **kwargs: object) -> tuple[ServingCore, ScriptedEngine]:
        scripts = [processor.tokenizer.encode(t) for t in texts] or [[]]
        engine = ScriptedEngine(scripts, **kwargs)  # type: ignore[arg-type]
        return ServingCore(engine, processor), engine

    return build
