"""Admission, holds, the usage ledger: exact charges, idempotency, no overspending under concurrency."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest

from qwen35.platform import (
    InsufficientCredits,
    InvalidInput,
    Platform,
    compute_cost,
    nanos_to_usd,
)

MODEL = "qwen3-5-4b"
EP = "chat.completions"


def _funded(platform: Platform, usd: str, name: str = "acme"):  # type: ignore[no-untyped-def]
    platform.create_account(name)
    platform.add_credits(name, usd)
    key, _ = platform.create_key("k", account=name)
    return key


def test_record_charges_exact_cost_and_settles_hold(platform: Platform) -> None:
    key = _funded(platform, "1")
    adm = platform.admit(key, EP, MODEL, max_input_tokens=1000, max_output_tokens=500)
    # worst case: 1000 x 40 + 500 x 70 nano-dollars
    assert adm.hold_nanos == 1000 * 40 + 500 * 70
    assert platform.get_account("acme").held_nanos == adm.hold_nanos
    rec = platform.record_usage("req-1", adm, EP, MODEL, 1000, 200, 300, 120, 1, 42, "completed")
    assert rec.cost_nanos == 800 * 40 + 200 * 20 + 300 * 70 + 13_000_000
    assert rec.cost == nanos_to_usd(rec.cost_nanos) == Decimal("0.013057")
    account = platform.get_account("acme")
    assert account.held_nanos == 0
    assert account.balance_nanos == 10**9 - rec.cost_nanos
    assert platform.ledger_sum("acme") == account.balance_nanos


def test_idempotent_by_request_id(platform: Platform) -> None:
    key = _funded(platform, "1")
    adm = platform.admit(key, EP, MODEL, 100, 100)
    first = platform.record_usage("req-x", adm, EP, MODEL, 100, 0, 50)
    again = platform.record_usage("req-x", adm, EP, MODEL, 100, 0, 99, status="error")
    also = platform.record_usage("req-x", key, EP, MODEL, 5, 0, 5)
    assert first == again == also
    assert len(platform.list_usage(account="acme")) == 1
    assert platform.get_account("acme").balance_nanos == 10**9 - first.cost_nanos
    assert platform.ledger_sum("acme") == 10**9 - first.cost_nanos


def test_partial_stream_is_charged_for_what_was_generated(platform: Platform) -> None:
    key = _funded(platform, "1")
    adm = platform.admit(key, EP, MODEL, 50, 4096)
    rec = platform.record_usage("req-cut", adm, EP, MODEL, 50, 0, 17, 10, status="client_disconnect")
    assert rec.status == "client_disconnect"
    assert rec.cost_nanos == compute_cost(adm.prices, 50, 0, 17)
    assert platform.get_account("acme").held_nanos == 0


def test_insufficient_credits_refused_before_work(platform: Platform) -> None:
    key = _funded(platform, "0.0001")  # 100,000 nano-dollars
    with pytest.raises(InsufficientCredits) as info:
        platform.admit(key, EP, MODEL, 1000, 1000)  # needs 110,000
    assert info.value.required_nanos == 110_000 and info.value.balance_nanos == 100_000
    assert "credit balance is too low" in str(info.value)
    adm = platform.admit(key, EP, MODEL, 1000, 800)  # 96,000 fits
    with pytest.raises(InsufficientCredits):  # only 4,000 left unheld
        platform.admit(key, EP, MODEL, 100, 100)
    platform.release(adm)
    platform.release(adm)  # idempotent
    assert platform.get_account("acme").held_nanos == 0
    assert platform.get_account("acme").balance_nanos == 100_000  # release charges nothing
    platform.admit(key, EP, MODEL, 100, 100)


def test_new_account_needs_credits_default_account_is_unlimited(platform: Platform) -> None:
    platform.create_account("broke")
    broke, _ = platform.create_key("b", account="broke")
    with pytest.raises(InsufficientCredits):
        platform.admit(broke, EP, MODEL, 1, 1)
    operator, _ = platform.create_key("op")  # default account
    adm = platform.admit(operator, EP, MODEL, 10**6, 10**6)
    assert adm.hold_nanos == 0
    rec = platform.record_usage("r", adm, EP, MODEL, 10**6, 0, 10**6)
    account = platform.get_account("default")
    assert account.balance_nanos == -rec.cost_nanos  # metered and charged all the same
    platform.add_credits("default", "0.01")  # the operator sets a balance: limiting starts
    assert platform.get_account("default").credit_limited
    with pytest.raises(InsufficientCredits):
        platform.admit(operator, EP, MODEL, 1, 1)


def test_price_change_applies_to_new_requests_only(platform: Platform, clock) -> None:  # type: ignore[no-untyped-def]
    key = _funded(platform, "10")
    old = platform.admit(key, EP, MODEL, 100, 100)
    clock.advance(1)
    platform.set_price(MODEL, input_per_million="1", cached_input_per_million="0.5", output_per_million="2",
                       web_search_per_call="0.05")
    clock.advance(1)
    new = platform.admit(key, EP, MODEL, 100, 100)
    other_model = platform.admit(key, EP, "other-model", 100, 100)
    a = platform.record_usage("old", old, EP, MODEL, 100, 0, 100)
    b = platform.record_usage("new", new, EP, MODEL, 100, 0, 100)
    c = platform.record_usage("other", other_model, EP, "other-model", 100, 0, 100)
    assert a.cost_nanos == 100 * 40 + 100 * 70
    assert b.cost_nanos == 100 * 1000 + 100 * 2000
    assert c.cost_nanos == a.cost_nanos  # falls back to the "*" card
    assert {p.model for p in platform.list_prices()} == {"*", MODEL}


def test_record_with_bare_key_and_validation(platform: Platform) -> None:
    key, _ = platform.create_key("k")
    rec = platform.record_usage("bare", key, EP, MODEL, 10, 5, 3, 0, 0, 1, "error")
    assert rec.cost_nanos == 5 * 40 + 5 * 20 + 3 * 70
    for bad in (
        dict(input_tokens=-1),
        dict(output_tokens=1, reasoning_tokens=2),
        dict(input_tokens=1, cached_input_tokens=2),
        dict(status=""),
        dict(status="x" * 33),
    ):
        args = dict(input_tokens=1, cached_input_tokens=0, output_tokens=0, reasoning_tokens=0, status="ok")
        args.update(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            platform.record_usage("bad", key, EP, MODEL, **args)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        platform.admit(key, EP, MODEL, -1, 0)
    with pytest.raises(InvalidInput):
        platform.record_usage("bad", "not a key", EP, MODEL, 1)  # type: ignore[arg-type]
    assert platform.get_usage("bad") is None


def test_concurrent_admissions_never_overspend(platform: Platform) -> None:
    """16 threads race for a balance that covers ~10 worst cases; the balance never drops below zero."""
    balance = 1_000_000  # nano-dollars
    platform.create_account("small")
    platform.add_credits("small", nanos_to_usd(balance))
    key, _ = platform.create_key("k", account="small")
    worst = 1000 * 40 + 857 * 70  # just under 100,000
    admitted: list[int] = []
    refused: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(worker_id: int) -> None:
        rng = random.Random(worker_id)
        try:
            for attempt in range(6):
                try:
                    adm = platform.admit(key, EP, MODEL, 1000, 857)
                except InsufficientCredits:
                    with lock:
                        refused.append(worker_id)
                    continue
                assert adm.hold_nanos == worst
                out = rng.randint(0, 857)
                rec = platform.record_usage(f"w{worker_id}-{attempt}", adm, EP, MODEL, 1000, rng.randint(0, 1000), out)
                with lock:
                    admitted.append(rec.cost_nanos)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    account = platform.get_account("small")
    assert account.balance_nanos == balance - sum(admitted)
    assert account.balance_nanos >= 0 and account.held_nanos == 0
    assert platform.ledger_sum("small") == account.balance_nanos
    assert refused, "the balance was meant to run out"
    assert len(platform.list_usage(account="small", limit=1000)) == len(admitted)


def test_concurrent_duplicate_records_charge_once(platform: Platform) -> None:
    key = _funded(platform, "1")
    adm = platform.admit(key, EP, MODEL, 100, 100)
    results = []

    def record() -> None:
        results.append(platform.record_usage("dup", adm, EP, MODEL, 100, 0, 100))

    threads = [threading.Thread(target=record) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert platform.ledger_sum("acme") == 10**9 - results[0].cost_nanos == platform.get_account("acme").balance_nanos


def test_stale_holds_expire(platform: Platform, clock) -> None:  # type: ignore[no-untyped-def]
    key = _funded(platform, "0.0001")
    platform.admit(key, EP, MODEL, 1000, 800)  # a server crashed holding this
    with pytest.raises(InsufficientCredits):
        platform.admit(key, EP, MODEL, 100, 100)
    clock.advance(platform.hold_ttl_ms / 1000 + 1)
    platform.admit(key, EP, MODEL, 100, 100)
    assert platform.prune_admissions() >= 1
