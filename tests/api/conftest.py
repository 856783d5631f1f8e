"""Fixtures for the OpenAI-family API tests: the real app (real processor, platform store and serving core) over
a scripted engine, served on 127.0.0.1 by `scripted_app.serve`, plus openai SDK clients and `validate_schema` (the
official OpenAI spec subset, through `scripted_app.assert_matches_spec`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from qwen35.api.app import create_app
from qwen35.api.settings import ServerSettings
from qwen35.platform.platform import Platform
from qwen35.processor import Processor, load_processor
from qwen35.serving.core import ServingCore
from scripted_app import assert_matches_spec, reset_engine, serve
from scripted_engine import ScriptedEngine


@dataclass
class OpenAIHarness:
    app: Any
    engine: ScriptedEngine
    processor: Processor
    platform: Platform
    secret: str
    base_url: str = ""

    def script(self, *texts: str) -> None:
        """Every following request is answered with these texts (one per sample)."""
        ids = [self.processor.tokenizer.encode(t) for t in texts]
        self.engine.set_script(ids)

    def client(self, strict: bool = False, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.base_url}/v1", api_key=self.secret, max_retries=0, _strict_response_validation=strict,
            **kwargs,
        )


@pytest.fixture(scope="session")
def shared_processor() -> Processor:
    return load_processor(None)


@pytest.fixture(scope="module")
def oai(tmp_path_factory: pytest.TempPathFactory, shared_processor: Processor) -> Iterator[OpenAIHarness]:
    engine = ScriptedEngine([shared_processor.tokenizer.encode("Hello<|im_end|>")], max_model_len=40960)
    platform = Platform.open(data_dir=tmp_path_factory.mktemp("oai-platform"))
    _, secret = platform.create_key("tests")
    core = ServingCore(engine, shared_processor)
    app = create_app(core, platform, ServerSettings(max_model_len=core.max_model_len))
    harness = OpenAIHarness(app, engine, shared_processor, platform, secret)
    with serve(app) as base_url:
        harness.base_url = base_url
        yield harness
    platform.close()


@pytest.fixture(autouse=True)
def _reset_scripted_engine(request: pytest.FixtureRequest) -> None:
    if "oai" not in request.fixturenames:
        return
    harness: OpenAIHarness = request.getfixturevalue("oai")
    reset_engine(harness.engine)
    harness.script("Hello<|im_end|>")


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def client(request: pytest.FixtureRequest, oai: OpenAIHarness) -> openai.OpenAI:
    return oai.client(strict=request.param)


@pytest.fixture(scope="session")
def validate_schema() -> Callable[[str, Any], None]:
    """validate_schema("CreateChatCompletionResponse", body): fails on any deviation from the official spec."""

    def validate(name: str, instance: Any) -> None:
        assert_matches_spec("chat", name, instance)

    return validate
