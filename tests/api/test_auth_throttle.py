"""Failed-authentication throttling per client address (issue 14: 600 failed logins from one address met no
throttle): beyond `auth_max_failures` in the window, a 429 with `retry-after` in the family's format; a valid key
from the same address is never refused; the dashboard's sign-in shares the count; memory is bounded.

The real app over the scripted engine, with a small limit (5 per 60 s) so the test sends few requests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from qwen35.api.app import create_app
from qwen35.api.auth_throttle import FailedAuthThrottle
from qwen35.api.settings import ServerSettings
from qwen35.platform import Platform
from qwen35.processor import load_processor
from qwen35.serving.core import ServingCore
from scripted_app import serve
from scripted_engine import ScriptedEngine

MODEL = "qwen3-5-4b"
LIMIT = 5
BAD = "sk-q35-000000000000" + "x" * 43
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    processor = load_processor(None)
    engine = ScriptedEngine([processor.tokenizer.encode("Hello<|im_end|>")], max_model_len=4096)
    platform = Platform.open(data_dir=tmp_path)
    _, secret = platform.create_key("good")
    settings = ServerSettings(max_model_len=4096, auth_max_failures=LIMIT, auth_failure_window_s=60)
    app = create_app(ServingCore(engine, processor), platform, settings)
    with serve(app) as base_url:
        yield base_url, secret
    platform.close()


def _post(base_url: str, path: str, secret: str | None, body: dict) -> httpx.Response:  # type: ignore[type-arg]
    headers = {"anthropic-version": "2023-06-01"}
    if secret is not None:
        headers["x-api-key" if path == "/v1/messages" else "authorization"] = (
            secret if path == "/v1/messages" else f"Bearer {secret}"
        )
    return httpx.post(base_url + path, json=body, headers=headers, timeout=30)


def test_failed_logins_beyond_the_limit_get_429_and_valid_keys_still_pass(server: tuple[str, str]) -> None:
    base_url, secret = server
    for n in range(LIMIT):
        response = _post(base_url, "/v1/chat/completions", BAD if n % 2 else None, CHAT)  # missing counts too
        assert response.status_code == 401, (n, response.text)
    throttled = _post(base_url, "/v1/chat/completions", BAD, CHAT)
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "too_many_failed_auth_attempts"
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    # the Anthropic family words it its own way; the dashboard's sign-in is throttled too (same address)
    anthropic = _post(base_url, "/v1/messages", BAD, {**CHAT, "max_tokens": 4})
    assert anthropic.status_code == 429 and anthropic.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in anthropic.headers
    dashboard = httpx.get(f"{base_url}/v1/dashboard/keys", headers={"authorization": f"Bearer {BAD}"})
    assert dashboard.status_code == 429 and "retry-after" in dashboard.headers
    models = httpx.get(f"{base_url}/v1/models", headers={"authorization": f"Bearer {BAD}"})
    assert models.status_code == 429
    # a valid key from the throttled address is served, on every route
    assert _post(base_url, "/v1/chat/completions", secret, CHAT).status_code == 200
    assert _post(base_url, "/v1/messages", secret, CHAT).status_code == 200
    assert httpx.get(f"{base_url}/v1/dashboard/keys", headers={"authorization": f"Bearer {secret}"}).status_code == 200


def test_window_expiry_and_bounded_memory() -> None:
    now = [0.0]
    throttle = FailedAuthThrottle(max_failures=3, window_s=10, max_addresses=100, clock=lambda: now[0])
    assert [throttle.failed("a") for _ in range(3)] == [None, None, None]
    wait = throttle.failed("a")
    assert wait is not None and 9.9 <= wait <= 10
    assert throttle.failed("b") is None  # per address
    now[0] = 10.5  # the early failures left the window: counting starts again
    assert [throttle.failed("a") for _ in range(3)] == [None, None, None]
    assert throttle.failed("a") is not None
    for n in range(10_000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert throttle.num_addresses() == 100  # least recently failed addresses are forgotten first
    off = FailedAuthThrottle(max_failures=0)
    assert all(off.failed("x") is None for _ in range(100)) and off.num_addresses() == 0


class _UnreachableKeyStore(Platform):
    """The key lookup fails as an unreachable PostgreSQL does (StoreUnavailable from read_tx)."""

    async def aauthenticate(self, secret: str) -> None:
        from qwen35.platform import StoreUnavailable

        raise StoreUnavailable("the platform store postgresql://db is unavailable: connection refused")


def test_a_key_store_outage_at_authentication_is_a_503_not_a_500(tmp_path) -> None:  # type: ignore[no-untyped-def]
    processor = load_processor(None)
    engine = ScriptedEngine([processor.tokenizer.encode("Hello<|im_end|>")], max_model_len=4096)
    platform = _UnreachableKeyStore.open(data_dir=tmp_path)
    app = create_app(ServingCore(engine, processor), platform, ServerSettings(max_model_len=4096))
    try:
        with serve(app) as base_url:
            chat = _post(base_url, "/v1/chat/completions", BAD, CHAT)
            assert chat.status_code == 503 and chat.json()["error"]["code"] == "store_unavailable"
            assert int(chat.headers["retry-after"]) >= 1
            messages = _post(base_url, "/v1/messages", BAD, CHAT)
            assert messages.status_code == 503 and messages.json()["error"]["type"] == "api_error"
    finally:
        platform.close()
