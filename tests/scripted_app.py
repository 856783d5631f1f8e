"""Test harness shared by every API test: the real app over `scripted_engine.ScriptedEngine`, a uvicorn
server on 127.0.0.1 (`serve`), and validation against subsets of the saved OpenAPI specs (`assert_matches_spec`).

Scripts are completion *texts* (tokenized with the real tokenizer and ended with `<|im_end|>`), so the real serving
core (detokenizer, reasoning / tool-call parser, usage) turns them into events exactly as it would a model's output.
Spec families: "chat" (OpenAI chat/completions/models, tests/api/data), "openai" (OpenAI Responses) and
"anthropic" (Messages), each a subset file next to the tests. Real-engine tests use `qwen35.engine.build` with the
tiny checkpoint instead of the scripted engine, and the same `serve`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen35.engine.request import SamplingParams
from scripted_engine import ScriptedEngine

TextScript = Callable[[list[int], SamplingParams], str]

TOOL_CALL_TEXT = (
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"
)
_API_TESTS = Path(__file__).parent / "api"
SCHEMA_FILES = {
    "chat": _API_TESTS / "data" / "openai_schemas.json",
    "openai": _API_TESTS / "openai" / "responses_schemas.json",
    "anthropic": _API_TESTS / "anthropic" / "data" / "anthropic_schemas.json",
}


@dataclass
class AppHarness:
    app: Any
    engine: ScriptedEngine
    tokenizer: Any
    platform: Any
    secret: str
    key: Any
    base_url: str = ""

    def say(self, text: str | TextScript) -> None:
        """Answer every following request with this completion text (or text computed from the prompt)."""
        script = text if callable(text) else (lambda prompt, params: text)
        self.engine.set_script(
            lambda _rid, prompt, params: [self.tokenizer.encode(script(prompt, params) + "<|im_end|>")]
        )

    def think_then_say(self, reasoning: str, answer: str) -> None:
        """Reasoning + `</think>` + answer when the prompt opened a think block, else just the answer."""

        def script(prompt: list[int], params: SamplingParams) -> str:
            opened = self.tokenizer.decode(prompt[-4:]).endswith("<think>\n")
            return f"{reasoning}\n</think>\n\n{answer}" if opened else answer

        self.say(script)

    @property
    def last_prompt(self) -> list[int]:
        return self.engine.submitted[-1].prompt_token_ids

    @property
    def last_params(self) -> SamplingParams:
        return self.engine.submitted[-1].params

    def last_prompt_text(self) -> str:
        return self.tokenizer.decode(self.last_prompt)

    def reset(self) -> None:
        reset_engine(self.engine)
        self.say("Hello")

    def new_key(self, name: str = "other", account: str | None = None) -> str:
        return self.platform.create_key(name, account=account)[1]


def wait_for_usage(platform: Any, request_id: str | None, timeout_s: float = 30) -> Any:
    """The ledger record of `request_id`, polled for until it is written (settlement runs after the answer)."""
    assert request_id is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = platform.get_usage(request_id)
        if record is not None:
            return record
        time.sleep(0.05)
    raise AssertionError(f"no usage record for {request_id}")


def reset_engine(engine: ScriptedEngine) -> None:
    """Undo what a test may have set on the shared scripted engine (its script is the caller's to set)."""
    engine.overloaded = False
    engine.fail_after_steps = None
    engine.num_cached_tokens = 0
    engine.step_delay_s = 0.0
    engine.tokens_per_step = 1


def build_app(data_dir: Path) -> AppHarness:
    """The real app (create_app) over the real serving core, a scripted engine and a platform store in data_dir."""
    from qwen35.api.app import create_app
    from qwen35.platform import Platform
    from qwen35.processor import load_processor
    from qwen35.serving.core import ServingCore

    processor = load_processor(None)
    engine = ScriptedEngine([[]])
    platform = Platform.open(data_dir=data_dir)
    key, secret = platform.create_key("test")
    harness = AppHarness(create_app(ServingCore(engine, processor), platform), engine, processor.tokenizer,
                         platform, secret, key)
    harness.reset()
    return harness


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL (no /v1)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def running_app(data_dir: Path) -> Iterator[AppHarness]:
    """`build_app` served on 127.0.0.1: the harness with its `base_url` set; the platform closed afterwards."""
    harness = build_app(data_dir)
    try:
        with serve(harness.app) as base_url:
            harness.base_url = base_url
            yield harness
    finally:
        harness.platform.close()


@dataclass
class RealApp:
    """The real engine on a checkpoint behind the app, served on 127.0.0.1."""

    base_url: str  # no /v1
    secret: str
    processor: Any
    platform: Any


@contextlib.contextmanager
def running_real_app(checkpoint: Path, data_dir: Path, media: Any = None) -> Iterator[RealApp]:
    """`qwen35.engine.build` + the checkpoint's processor + a fresh platform with one key, served by `serve`
    (`media`: a `MediaResolver` in place of the default one, e.g. with other limits)."""
    from qwen35.api.app import create_app
    from qwen35.api.settings import ServerSettings
    from qwen35.engine.args import EngineArgs
    from qwen35.engine.build import build_async_engine
    from qwen35.platform import Platform
    from qwen35.processor import load_processor
    from qwen35.serving.core import ServingCore

    engine = build_async_engine(EngineArgs(model=str(checkpoint), dtype="float32", device="cpu", max_model_len=1024,
                                           max_num_seqs=4, progress=False))
    processor = load_processor(checkpoint)
    platform = Platform.open(data_dir=data_dir)
    _, secret = platform.create_key("e2e")
    core = ServingCore(engine, processor, media=media)
    app = create_app(core, platform, ServerSettings(max_model_len=core.max_model_len, model_path=str(checkpoint)))
    try:
        with serve(app) as base_url:
            yield RealApp(base_url, secret, processor, platform)
    finally:
        engine.shutdown()
        platform.close()


def _nullable(node: Any) -> Any:
    """Some schemas still mark fields with OpenAPI 3.0's `nullable: true`; say it in JSON Schema terms."""
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


@functools.cache
def _components(family: str) -> Any:
    return _nullable(json.loads(SCHEMA_FILES[family].read_text())["components"])


@functools.cache
def spec_validator(family: str, schema_name: str) -> Any:
    """A JSON Schema 2020-12 validator for `components.schemas.<schema_name>` of the family's OpenAPI subset."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator({"$ref": f"#/components/schemas/{schema_name}", "components": _components(family)})


def assert_matches_spec(family: str, schema_name: str, payload: Any) -> None:
    from jsonschema.exceptions import best_match

    error = best_match(spec_validator(family, schema_name).iter_errors(payload))
    assert error is None, f"{schema_name} at {list(error.absolute_path)}: {error.message[:300]}"
