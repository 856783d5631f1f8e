"""Rate limits: the sliding-window arithmetic, and RateLimited with headers through Platform.admit."""

from __future__ import annotations

import pytest

from qwen35.platform import KeyLimits, Platform, RateLimited
from qwen35.platform.ratelimit import Sample, Verdict, format_duration, window_stats
from qwen35.platform.ratelimit import evaluate as evaluate_stats


def evaluate(samples: list[Sample], now_ms: int, limits: KeyLimits, new_tokens: int, active: int) -> Verdict:
    return evaluate_stats(window_stats(samples, now_ms), now_ms, limits, new_tokens, active, lambda: samples)

EP, MODEL = "chat.completions", "qwen3-5-4b"


@pytest.mark.parametrize(("ms", "text"), [(0, "0ms"), (17, "17ms"), (1000, "1s"), (1500, "1.5s"), (360_000, "6m0s"),
                                          (61_250, "1m1.25s")])
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_requests_window_and_retry_after() -> None:
    limits = KeyLimits(requests_per_minute=3)
    samples = [Sample(1_000, 1), Sample(20_000, 1), Sample(30_000, 1)]
    verdict = evaluate(samples, 40_000, limits, 1, 0)
    assert verdict.exceeded == "requests"
    assert verdict.retry_after_ms == 1_000 + 60_000 - 40_000  # the oldest sample leaves the window
    assert verdict.status.remaining_requests == 0
    ok = evaluate(samples, 61_001, limits, 1, 0)  # the first sample has left
    assert ok.exceeded is None and ok.status.remaining_requests == 0


def test_tokens_window() -> None:
    limits = KeyLimits(tokens_per_minute=1000)
    samples = [Sample(0, 400), Sample(10_000, 300), Sample(20_000, 200)]
    verdict = evaluate(samples, 30_000, limits, 400, 0)
    assert verdict.exceeded == "tokens"
    # 900 used + 400 > 1000; once the 400-token sample leaves (at 60 s) 500 + 400 fits.
    assert verdict.retry_after_ms == 30_000
    assert evaluate(samples, 30_000, limits, 100, 0).status.remaining_tokens == 0
    too_big = evaluate([], 0, limits, 1001, 0)
    assert too_big.exceeded == "tokens" and "Request too large" in too_big.message


def test_concurrency_limit() -> None:
    limits = KeyLimits(max_concurrent=2)
    assert evaluate([], 0, limits, 1, 1).exceeded is None
    assert evaluate([], 0, limits, 1, 2).exceeded == "concurrency"


def test_admit_raises_rate_limited_with_headers(platform: Platform, clock) -> None:  # type: ignore[no-untyped-def]
    key, _ = platform.create_key("k", limits=KeyLimits(requests_per_minute=2, tokens_per_minute=10_000))
    first = platform.admit(key, EP, MODEL, 100, 100)
    headers = first.openai_headers()
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "1"
    assert headers["x-ratelimit-limit-tokens"] == "10000"
    assert headers["x-ratelimit-remaining-tokens"] == "9800"
    assert first.anthropic_headers()["anthropic-ratelimit-requests-remaining"] == "1"
    clock.advance(10)
    platform.record_usage("a", first, EP, MODEL, 100, 0, 20)
    platform.admit(key, EP, MODEL, 100, 100)
    with pytest.raises(RateLimited) as info:
        platform.admit(key, EP, MODEL, 100, 100)
    exc = info.value
    assert exc.limit == "requests"
    assert exc.retry_after == pytest.approx(50.0)
    assert exc.headers["retry-after"] == "50"
    assert exc.headers["x-ratelimit-remaining-requests"] == "0"
    assert exc.headers["x-ratelimit-reset-requests"] == "50s"
    assert exc.anthropic_headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert exc.anthropic_headers["retry-after"] == "50"
    assert "anthropic-ratelimit-requests-reset" in exc.anthropic_headers
    clock.advance(50.001)
    platform.admit(key, EP, MODEL, 100, 100)


def test_settled_requests_count_actual_tokens(platform: Platform, clock) -> None:  # type: ignore[no-untyped-def]
    key, _ = platform.create_key("k", limits=KeyLimits(tokens_per_minute=1000))
    adm = platform.admit(key, EP, MODEL, 100, 800)  # 900 reserved
    with pytest.raises(RateLimited) as info:
        platform.admit(key, EP, MODEL, 100, 100)
    assert info.value.limit == "tokens"
    platform.record_usage("r", adm, EP, MODEL, 100, 0, 50)  # only 150 used
    platform.admit(key, EP, MODEL, 100, 700)


def test_concurrency_slot_freed_by_record_or_release(platform: Platform) -> None:
    key, _ = platform.create_key("k", limits=KeyLimits(max_concurrent=2))
    a = platform.admit(key, EP, MODEL, 1, 1)
    b = platform.admit(key, EP, MODEL, 1, 1)
    with pytest.raises(RateLimited) as info:
        platform.admit(key, EP, MODEL, 1, 1)
    assert info.value.limit == "concurrency" and info.value.headers["retry-after"] == "1"
    platform.release(a)
    c = platform.admit(key, EP, MODEL, 1, 1)
    platform.record_usage("b", b, EP, MODEL, 1, 0, 1)
    platform.admit(key, EP, MODEL, 1, 1)
    assert c.admission_id != a.admission_id


def test_default_limits_apply_to_keys_without_their_own(store_url: str, clock) -> None:  # type: ignore[no-untyped-def]
    with Platform.open(database_url=store_url, clock=clock, default_limits=KeyLimits(requests_per_minute=1)) as p:
        plain, _ = p.create_key("plain")
        roomy, _ = p.create_key("roomy", limits=KeyLimits(requests_per_minute=5))
        p.admit(plain, EP, MODEL, 1, 1)
        with pytest.raises(RateLimited):
            p.admit(plain, EP, MODEL, 1, 1)
        p.admit(roomy, EP, MODEL, 1, 1)
        p.admit(roomy, EP, MODEL, 1, 1)
