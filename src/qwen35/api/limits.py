"""Input limits checked before any handler runs: body size (413), JSON nesting depth and number of values (400),
on every route.

Owns `LimitsMiddleware` (pure ASGI): it reads the request body up to `ServerSettings.max_body_bytes` (a declared
`content-length` beyond it is refused before a byte is read), parses a JSON body once off the event loop when it
is large, refuses nesting deeper than `max_json_depth`, and hands the parsed value to `api.body.read_json` through
`scope["state"]` so no handler parses it again. Imports serving.errors and Starlette; errors are rendered by the
app's error families (api.errors), so each API answers in its own format.
Invariant: no body past the limit reaches a handler, and no JSON document reaches `json.loads` in a handler unless
it parsed here within the depth limit (so no RecursionError, no 500, the connection stays usable).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen35.serving.errors import InvalidRequestError, PayloadTooLargeError, ServingError

PARSED_KEY = "json_body"  # scope["state"][PARSED_KEY]: the parsed body (absent when it is not valid JSON)
OFF_LOOP_BYTES = 64 * 1024  # parsing a body this large would hold the event loop for more than ~1 ms
_METHODS = ("POST", "PUT", "PATCH")


def json_shape(value: Any) -> tuple[int, int]:
    """(nesting depth, number of values) of a parsed JSON value (a scalar is (0, 1), `[]` is (1, 1)), without
    recursion."""
    deepest, count = 0, 1
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        count += len(children)
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))
    return deepest, count


def parse_limited(raw: bytes, max_depth: int, max_elements: int | None = None) -> tuple[bool, Any]:
    """(True, value) for JSON within the depth and size limits, (False, None) for what is not JSON (the handler
    words that); raises InvalidRequestError for nesting or a number of values beyond the limits."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except (ValueError, UnicodeDecodeError):
        return False, None
    depth, count = json_shape(value)
    if depth > max_depth:
        raise _too_deep(max_depth)
    if max_elements is not None and count > max_elements:
        raise InvalidRequestError(f"The JSON body holds {count} values; this server accepts at most {max_elements}.",
                                  code="invalid_json")
    return True, value


def _too_deep(max_depth: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"The JSON body is nested too deeply (more than {max_depth} levels of objects and arrays).",
        code="invalid_json",
    )


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than the {max_bytes // (1024 * 1024)} MB this server accepts.",
        code="request_too_large",
    )


class LimitsMiddleware:
    """Body size and JSON depth limits for every HTTP request with a body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _METHODS:
            await self.app(scope, receive, send)
            return
        settings = scope["app"].state.settings
        try:
            raw = await _read_body(scope, receive, settings.max_body_bytes)
            if raw.strip():
                if len(raw) > OFF_LOOP_BYTES:
                    ok, value = await anyio.to_thread.run_sync(parse_limited, raw, settings.max_json_depth,
                                                               settings.max_json_elements)
                else:
                    ok, value = parse_limited(raw, settings.max_json_depth, settings.max_json_elements)
                if ok:
                    scope.setdefault("state", {})[PARSED_KEY] = value
        except ServingError as exc:
            response = scope["app"].state.error_families.render(Request(scope), exc)
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(raw, receive), send)


async def _read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: the handler sees the same
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(raw: bytes, receive: Receive) -> Receive:
    """A receive that yields the buffered body once, then the real channel (disconnect notices)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replayed
