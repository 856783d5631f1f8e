"""A read-only store (SQLite opened `mode=ro`, PostgreSQL `default_transaction_read_only`): admission is
StoreUnavailable (the API's 503), a finished request's usage goes to the journal, and the next process on the host
that can write replays it - the record lands once, the hold is settled, the balance matches the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from qwen35.platform import Platform, StoreUnavailable, schema

MODEL = "qwen3-5-4b"


def _read_only(url: str) -> str:
    if url.startswith("sqlite"):
        return f"sqlite:///file:{url.partition(':///')[2]}?mode=ro&uri=true"
    return url + "%20-cdefault_transaction_read_only%3Don"


def test_read_only_store_journals_usage_and_the_next_start_replays_it(store_url: str, tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    writable = Platform.open(database_url=store_url, journal_dir=journal_dir)
    writable.create_account("acct")
    writable.add_credits("acct", "1")
    _, secret = writable.create_key("k", account="acct")
    key = writable.authenticate(secret)
    assert key is not None
    admission = writable.admit(key, "chat.completions", MODEL, 100, 50)  # admitted before the store went read-only
    writable.close()

    read_only = Platform.open(database_url=_read_only(store_url), journal_dir=journal_dir)
    assert read_only.authenticate(secret) is not None  # reads still work
    with pytest.raises(StoreUnavailable):
        read_only.admit(key, "chat.completions", MODEL, 10, 10)
    assert not read_only.store_status()["ok"]
    record = read_only.record_usage("req_ro", admission, "chat.completions", MODEL, 100, 0, 42)
    assert record.cost_nanos > 0 and read_only.store_status()["journal_pending"] == 1
    assert read_only.get_usage("req_ro") is None
    read_only.close()  # cannot replay: the entry stays on disk for the next start

    with Platform.open(database_url=store_url, journal_dir=journal_dir) as restarted:
        restarted.start_instance(background=False)
        stored = restarted.get_usage("req_ro")
        assert stored is not None and stored.cost_nanos == record.cost_nanos and stored.output_tokens == 42
        a = schema.admissions
        with restarted.engine.connect() as conn:
            state = conn.execute(select(a.c.state).where(a.c.admission_id == admission.admission_id)).scalar_one()
        assert state == "settled"
        account = restarted.get_account("acct")
        assert account.balance_nanos == 1_000_000_000 - record.cost_nanos == restarted.ledger_sum("acct")
        restarted.start_instance(background=False)  # idempotent: nothing replayed twice
        assert len(restarted.list_usage(account="acct")) == 1
