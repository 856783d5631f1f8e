"""Fixtures for the OpenAI-family API tests: the real app (real processor, platform store and serving core) over
a scripted engine, served by uvicorn on 127.0.0.1, plus openai SDK clients and an OpenAPI-spec validator."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jsonschema
import openai
import pytest
import uvicorn

from qwen35.api.app import create_app
from qwen35.api.settings import ServerSettings
from qwen35.platform.platform import Platform
from qwen35.processor import Processor, load_processor
from qwen35.serving.core import ServingCore
from qwen35.serving.scripted import ScriptedEngine

# The schemas of the official OpenAI spec these tests use (an unmodified subset, see its "_source").
SCHEMAS_PATH = Path(__file__).parent / "data" / "openai_schemas.json"


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn on 127.0.0.1 in a background thread (its own event loop), stopped on exit."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


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
    with ServerThread(app) as base_url:
        harness.base_url = base_url
        yield harness
    platform.close()


@pytest.fixture(autouse=True)
def _reset_scripted_engine(request: pytest.FixtureRequest) -> None:
    if "oai" not in request.fixturenames:
        return
    harness: OpenAIHarness = request.getfixturevalue("oai")
    engine = harness.engine
    engine.overloaded = False
    engine.fail_after_steps = None
    engine.num_cached_tokens = 0
    engine.step_delay_s = 0.0
    engine.tokens_per_step = 1
    harness.script("Hello<|im_end|>")


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def client(request: pytest.FixtureRequest, oai: OpenAIHarness) -> openai.OpenAI:
    return oai.client(strict=request.param)


def _nullable(node: Any) -> Any:
    """The spec still marks some fields with OpenAPI 3.0's `nullable: true`; say it in JSON Schema terms."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out or "allOf" in out or "anyOf" in out or "oneOf" in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture(scope="session")
def openapi_spec() -> dict[str, Any]:
    return _nullable(json.loads(SCHEMAS_PATH.read_text()))


@pytest.fixture(scope="session")
def validate_schema(openapi_spec: dict[str, Any]) -> Callable[[str, Any], None]:
    """validate_schema("CreateChatCompletionResponse", body): raises on any deviation from the official spec."""

    def validate(name: str, instance: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": openapi_spec["components"]}
        jsonschema.Draft202012Validator(schema).validate(instance)

    return validate


@pytest.fixture(scope="session")
def server_thread() -> type[ServerThread]:
    """`with server_thread(app) as base_url:` serves any app on 127.0.0.1 for the block."""
    return ServerThread
