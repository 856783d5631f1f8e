"""The HTTP client of `qwen35 bench serve`: one streamed OpenAI request, timed token by token.

Owns a small asyncio HTTP/1.1 client (standard library only: the product's runtime dependencies carry no HTTP
client; one connection per request, `Connection: close`, chunked or sized bodies, http and https) and
`RequestOutcome`, the timings of one request: time to the first text, the gaps between later text chunks, the
end-to-end latency and the token counts the server reported in its usage chunk. Imports nothing from qwen35.
Invariant: a request counts as successful only when the stream ended with `[DONE]` and carried no error event;
token counts come from the server's usage, never from counting chunks (a chunk may hold several tokens).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class HttpError(Exception):
    """A non-2xx answer, or a connection that broke mid-answer."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestOutcome:
    success: bool
    prompt_tokens: int = 0  # the server's usage.prompt_tokens (the chat template's tokens included)
    output_tokens: int = 0  # the server's usage.completion_tokens
    ttft_s: float = 0.0  # request sent -> first non-empty text chunk
    latency_s: float = 0.0  # request sent -> [DONE]
    itl_s: tuple[float, ...] = field(default=())  # gaps between successive text chunks
    finish_reason: str | None = None
    error: str = ""

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first; None for a single-token answer."""
        if self.output_tokens < 2:
            return None
        return (self.latency_s - self.ttft_s) / (self.output_tokens - 1)


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = ssl.create_default_context() if parts.scheme == "https" else None
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return reader, writer, host, path


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = (await reader.readline()).decode("latin-1")
    if not status_line:
        raise HttpError("connection closed before a response")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise HttpError(f"bad status line {status_line!r}") from None
    headers: dict[str, str] = {}
    while (line := (await reader.readline()).decode("latin-1").strip()):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> AsyncIterator[bytes]:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise HttpError("connection closed inside a chunked body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)  # CRLF after each chunk
            yield data
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while data := await reader.read(65536):
            yield data


async def _exchange(method: str, url: str, headers: Mapping[str, str], body: bytes | None
                    ) -> AsyncIterator[tuple[int, dict[str, str], bytes]]:
    """Yields (status, headers, b"") once the head is read, then (status, headers, body piece) as they arrive."""
    try:
        reader, writer, host, path = await _open(url)
    except OSError as exc:
        raise HttpError(f"cannot connect: {exc}") from exc
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close", "Accept-Encoding: identity"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        await writer.drain()
        status, answer_headers = await _head(reader)
        yield status, answer_headers, b""  # the status first, even for an empty body
        async for piece in _body(reader, answer_headers):
            yield status, answer_headers, piece
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        raise HttpError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def request_json(method: str, url: str, headers: Mapping[str, str], payload: Any = None) -> Any:
    """The decoded JSON answer of a plain request; HttpError on a non-2xx status."""
    body = None if payload is None else json.dumps(payload).encode()
    status, data = 0, b""
    async for answer_status, _, piece in _exchange(method, url, headers, body):
        status, data = answer_status, data + piece
    if not 200 <= status < 300:
        raise HttpError(f"HTTP {status}: {data[:300].decode('utf-8', 'replace')}", status)
    return json.loads(data) if data else None


async def sse_events(url: str, headers: Mapping[str, str], payload: Any) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent-event stream, in order; HttpError on a non-2xx status."""
    buffer, status = b"", 0
    async for status, _, piece in _exchange("POST", url, {**headers, "Accept": "text/event-stream"},
                                            json.dumps(payload).encode()):
        buffer += piece
        if not 200 <= status < 300:
            continue  # the error body is read whole below
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            text = line.decode("utf-8").rstrip("\r")
            if text.startswith("data:"):
                yield text[5:].lstrip(" ")
    if not 200 <= status < 300:
        raise HttpError(f"HTTP {status}: {buffer[:300].decode('utf-8', 'replace')}", status)


def _chunk_text(event: Mapping[str, Any]) -> str:
    text = ""
    for choice in event.get("choices") or ():
        delta = choice.get("delta")
        if isinstance(delta, Mapping):  # chat: answer and reasoning both count as output
            text += str(delta.get("content") or "") + str(delta.get("reasoning_content") or "")
        else:  # legacy completions
            text += str(choice.get("text") or "")
    return text


async def timed_request(url: str, headers: Mapping[str, str], payload: Mapping[str, Any],
                        timeout_s: float) -> RequestOutcome:
    """Send one streaming request and time it; never raises for a failed request (the outcome says why)."""
    start = time.perf_counter()
    last: float | None = None
    ttft = 0.0
    gaps: list[float] = []
    usage: Mapping[str, Any] = {}
    finish: str | None = None
    done = False
    try:
        async with asyncio.timeout(timeout_s):
            async for data in sse_events(url, headers, payload):
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    return RequestOutcome(False, error=f"in-stream error: {json.dumps(event['error'])[:300]}")
                now = time.perf_counter()
                if _chunk_text(event):
                    if last is None:
                        ttft = now - start
                    else:
                        gaps.append(now - last)
                    last = now
                for choice in event.get("choices") or ():
                    finish = choice.get("finish_reason") or finish
                usage = event.get("usage") or usage
    except (HttpError, TimeoutError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return RequestOutcome(False, error=str(exc) or type(exc).__name__)
    latency = time.perf_counter() - start
    if not done:
        return RequestOutcome(False, error="the stream ended without [DONE]")
    if last is None:
        ttft = latency  # no text at all (e.g. only special tokens): the first token is the last
    return RequestOutcome(True, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          output_tokens=int(usage.get("completion_tokens") or 0), ttft_s=ttft, latency_s=latency,
                          itl_s=tuple(gaps), finish_reason=finish)
