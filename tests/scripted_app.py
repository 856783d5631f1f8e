"""A scripted fake engine and an app builder for API-shape tests (no model, the real tokenizer and parser).

The engine "generates" the token ids of a scripted completion text, one token per step, through the real serving
core (detokenizer, reasoning / tool-call parser, usage): API tests see exactly what a model emitting that text
would produce. Real-engine tests use `qwen35.engine.build` with the tiny checkpoint instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

from qwen35.engine.request import EngineOutput, EngineOverloadedError, FinishReason, SamplingParams, SequenceDelta

Script = Callable[[list[int], SamplingParams], str]

TOOL_CALL_TEXT = (
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"
)


@dataclass
class ScriptedEngine:
    """`script(prompt_ids, params)` -> the completion text (reasoning first when the prompt opened <think>)."""

    tokenizer: Any
    script: Script
    vocab_size: int = 248320
    max_model_len: int = 4096
    num_cached_tokens: int = 0
    overloaded: bool = False
    step_delay_s: float = 0.0
    fail_after: int | None = None  # report an engine error after this many tokens
    calls: list[tuple[list[int], SamplingParams]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)

    def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams, mm_inputs: object | None = None
    ) -> AsyncIterator[EngineOutput]:
        return self._run(request_id, list(prompt_token_ids), params)

    async def _run(self, request_id: str, prompt: list[int], params: SamplingParams) -> AsyncIterator[EngineOutput]:
        if self.overloaded:
            raise EngineOverloadedError("The engine queue is full")
        self.calls.append((prompt, params))
        ids = self.tokenizer.encode(self.script(prompt, params))
        limit = params.max_tokens if params.max_tokens is not None else len(ids)
        stop_id = self.tokenizer.stop_token_ids[0]
        cached = min(self.num_cached_tokens, len(prompt))
        truncated = limit < len(ids)
        emitted = 0
        for token_id in ids[:limit]:
            emitted += 1
            finish = FinishReason.LENGTH if truncated and emitted == limit else None
            logprobs = [{token_id: -0.25, (token_id + 1) % self.vocab_size: -1.5}] if params.logprobs is not None else None
            yield EngineOutput(
                request_id,
                [SequenceDelta(i, [token_id], logprobs, emitted, 0, finish) for i in range(params.n)],
                num_prompt_tokens=len(prompt),
                num_cached_tokens=cached,
                finished=finish is not None,
            )
            if finish is not None:
                return
            if self.fail_after is not None and emitted >= self.fail_after:
                yield EngineOutput(request_id, [], num_prompt_tokens=len(prompt), error="scripted engine failure")
                return
            await asyncio.sleep(self.step_delay_s)  # yield to the loop like a real engine step
        yield EngineOutput(
            request_id,
            [SequenceDelta(i, [], None, emitted, 0, FinishReason.STOP, stop_token_id=stop_id) for i in range(params.n)],
            num_prompt_tokens=len(prompt),
            num_cached_tokens=cached,
            finished=True,
        )

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    def shutdown(self) -> None:
        return None


def fixed(text: str) -> Script:
    return lambda prompt, params: text


def thinking_aware(tokenizer: Any, reasoning: str, answer: str) -> Script:
    """Reasoning + `</think>` + answer when the prompt opened a think block, else just the answer."""

    def script(prompt: list[int], params: SamplingParams) -> str:
        opened = tokenizer.decode(prompt[-4:]).endswith("<think>\n")
        return f"{reasoning}\n</think>\n\n{answer}" if opened else answer

    return script


@dataclass
class AppHarness:
    app: Any
    engine: ScriptedEngine
    platform: Any
    secret: str
    key: Any
    base_url: str = ""

    def new_key(self, name: str = "other", account: str | None = None) -> str:
        return self.platform.create_key(name, account=account)[1]


def build_app(data_dir: Path, script: Script) -> AppHarness:
    """The real app (create_app) over the real serving core, a scripted engine and a fresh platform store."""
    from qwen35.api.app import create_app
    from qwen35.platform import Platform
    from qwen35.processor import load_processor
    from qwen35.serving.core import ServingCore

    processor = load_processor(None)
    engine = ScriptedEngine(processor.tokenizer, script)
    platform = Platform.open(data_dir=data_dir)
    key, secret = platform.create_key("test")
    core = ServingCore(engine, processor)
    return AppHarness(create_app(core, platform), engine, platform, secret, key)


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


SPECS = Path("/work/shared/reference/specs")
_SPEC_FILES = {"openai": "openai-openapi.json", "anthropic": "anthropic-openapi.json"}


@functools.lru_cache(maxsize=None)
def _spec(family: str) -> dict[str, Any]:
    candidates = [SPECS / _SPEC_FILES[family], Path(__file__).parents[1] / "shared/reference/specs" / _SPEC_FILES[family]]
    for path in candidates:
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"no {family} OpenAPI spec found in {candidates}")


@functools.lru_cache(maxsize=None)
def spec_validator(family: str, schema_name: str) -> Any:
    """A JSON Schema (2020-12) validator for `components.schemas.<schema_name>` of a saved OpenAPI 3.1 spec."""
    from jsonschema import Draft202012Validator

    root = dict(_spec(family))
    root["$ref"] = f"#/components/schemas/{schema_name}"
    return Draft202012Validator(root)


def assert_matches_spec(family: str, schema_name: str, payload: Any) -> None:
    from jsonschema.exceptions import best_match

    error = best_match(spec_validator(family, schema_name).iter_errors(payload))
    assert error is None, f"{schema_name} at {list(error.absolute_path)}: {error.message[:300]}"
