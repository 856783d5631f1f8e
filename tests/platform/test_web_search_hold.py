"""Web search fees are admitted like tokens: each search's fee joins the request's hold while the balance covers it."""

from __future__ import annotations

from qwen35.platform import Platform

MODEL = "qwen3-5-4b"
EP = "responses"
FEE = 13_000_000  # $0.013 in nano-dollars


def test_search_fee_held_until_the_balance_is_used_up(platform: Platform) -> None:
    platform.create_account("acme")
    hold = 100 * 40 + 100 * 70
    platform.add_credits("acme", "0.026011")  # the tokens' worst case + two searches, and 11 nano-dollars short of...
    key, _ = platform.create_key("k", account="acme")
    adm = platform.admit(key, EP, MODEL, max_input_tokens=100, max_output_tokens=100)
    assert adm.hold_nanos == hold
    assert platform.hold_web_search(adm)
    assert platform.hold_web_search(adm)
    assert platform.get_account("acme").held_nanos == hold + 2 * FEE
    assert not platform.hold_web_search(adm)  # ...a third search
    assert platform.get_account("acme").held_nanos == hold + 2 * FEE
    rec = platform.record_usage("req-ws", adm, EP, MODEL, 100, 0, 10, 0, web_search_calls=2)
    assert rec.cost_nanos == 100 * 40 + 10 * 70 + 2 * FEE
    account = platform.get_account("acme")
    assert account.held_nanos == 0 and account.balance_nanos == 26_011_000 - rec.cost_nanos


def test_not_credit_limited_accounts_always_search(platform: Platform) -> None:
    key, _ = platform.create_key("operator")  # the default account: metered, never refused
    adm = platform.admit(key, EP, MODEL, 10, 10)
    assert all(platform.hold_web_search(adm) for _ in range(3))
    assert platform.get_account("default").held_nanos == 0
