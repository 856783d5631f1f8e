"""The values that cross Ray between the HTTP front and the engine replicas (pickled by Ray).

Owns `EngineCall` (one generation: what `AsyncEngine.generate` takes, plus the replicas to avoid on a retry),
`ControlCall` (a call for the replica that runs a request: the router sends it there), `Hello` (the first item
of every stream: who serves it) and `RemoteError` (an engine refusal carried as data, rebuilt as the same typed
error on the front; Ray's own wrapping of raised exceptions loses their fields). Imports only engine data types.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwen35.engine.request import (
    ContextLengthError,
    EngineDeadError,
    EngineError,
    EngineOverloadedError,
    MediaInput,
    SamplingParams,
)


@dataclass(frozen=True)
class EngineCall:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    media: tuple[MediaInput, ...] = ()
    exclude: tuple[str, ...] = ()  # replicas that died under this request (a retry avoids them)


@dataclass(frozen=True)
class ControlCall:
    target_replica: str
    request_id: str
    index: int = 0


@dataclass(frozen=True)
class Hello:
    replica_id: str


@dataclass(frozen=True)
class RemoteError:
    kind: str  # context | input | overloaded | dead | internal
    message: str
    param: str | None = None
    code: str | None = None

    @classmethod
    def of(cls, exc: BaseException) -> RemoteError:
        if isinstance(exc, ContextLengthError):
            return cls("context", exc.message, exc.param, exc.code)
        if isinstance(exc, EngineError):
            return cls("input", exc.message, exc.param, exc.code)
        if isinstance(exc, EngineOverloadedError):
            return cls("overloaded", str(exc))
        if isinstance(exc, EngineDeadError):
            return cls("dead", str(exc))
        return cls("internal", f"engine error: {exc}")

    def to_exception(self) -> BaseException:
        if self.kind == "context":
            return ContextLengthError(self.message, self.param)
        if self.kind == "input":
            return EngineError(self.message, self.param, self.code)
        if self.kind == "overloaded":
            return EngineOverloadedError(self.message)
        if self.kind == "dead":
            return EngineDeadError(self.message)
        return RuntimeError(self.message)
