"""API keys: creation, authentication (incl. across processes), revocation, expiry, listing."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from qwen35.platform import InvalidInput, KeyInfo, KeyLimits, NotFound, Platform
from qwen35.platform.keys import hash_secret


def test_create_and_authenticate(platform: Platform) -> None:
    info, secret = platform.create_key("ci")
    assert isinstance(info, KeyInfo)
    assert secret.startswith(info.prefix) and len(secret) > len(info.prefix) + 30
    assert info.account_id == "default" and info.role == "user" and not info.is_admin
    assert platform.authenticate(secret) == info
    assert platform.authenticate(" " + secret + "\n") == info


def test_secret_never_stored_or_shown(platform: Platform) -> None:
    info, secret = platform.create_key("ci")
    assert secret not in repr(info)
    from sqlalchemy import select

    from qwen35.platform import schema

    with platform.engine.connect() as conn:
        rows = conn.execute(select(schema.api_keys)).all()
    stored = [tuple(row) for row in rows]
    assert all(secret not in str(value) for row in stored for value in row)
    assert bytes(rows[0].secret_hash) == hash_secret(secret)


@pytest.mark.parametrize(
    "candidate",
    ["", "nonsense", "sk-q35-", "Bearer x", "sk-q35-000000000000" + "A" * 43, "sk-q35-zzzzzzzzzzzz" + "A" * 43],
)
def test_unknown_or_malformed_secrets(platform: Platform, candidate: str) -> None:
    platform.create_key("ci")
    assert platform.authenticate(candidate) is None


def test_wrong_secret_with_real_prefix(platform: Platform) -> None:
    info, secret = platform.create_key("ci")
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert platform.authenticate(tampered) is None
    assert platform.authenticate(123) is None  # type: ignore[arg-type]


def test_revoked_key_is_refused_at_once(platform: Platform) -> None:
    info, secret = platform.create_key("ci")
    other, other_secret = platform.create_key("other")
    revoked = platform.revoke_key(info.key_id)
    assert revoked.revoked_at is not None
    assert platform.authenticate(secret) is None
    assert platform.authenticate(other_secret) == other
    assert platform.revoke_key(info.key_id).revoked_at == revoked.revoked_at  # idempotent


def test_expired_key_is_refused(platform: Platform, clock) -> None:  # type: ignore[no-untyped-def]
    now = datetime.fromtimestamp(clock(), tz=UTC)
    info, secret = platform.create_key("short", expires_at=now + timedelta(minutes=5))
    assert platform.authenticate(secret) == info
    clock.advance(299)
    assert platform.authenticate(secret) is not None
    clock.advance(1)
    assert platform.authenticate(secret) is None
    with pytest.raises(InvalidInput):
        platform.create_key("past", expires_at=now - timedelta(seconds=1))


def test_admin_role_limits_and_accounts(platform: Platform) -> None:
    platform.create_account("acme")
    info, secret = platform.create_key("admin", account="acme", admin=True, limits=KeyLimits(10, 1000, 2))
    assert info.is_admin and info.account_id == "acme"
    assert platform.authenticate(secret).limits == KeyLimits(10, 1000, 2)  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        platform.create_key("x", account="nobody")
    with pytest.raises(InvalidInput):
        platform.create_key("x", account="bad name!")
    with pytest.raises(InvalidInput):
        platform.create_key("")
    with pytest.raises(InvalidInput):
        KeyLimits(requests_per_minute=0)


def test_list_and_scoped_revoke(platform: Platform) -> None:
    platform.create_account("acme")
    a, _ = platform.create_key("a")
    b, _ = platform.create_key("b", account="acme")
    assert [k.key_id for k in platform.list_keys("acme")] == [b.key_id]
    assert {k.key_id for k in platform.list_keys()} == {a.key_id, b.key_id}
    with pytest.raises(NotFound):
        platform.revoke_key(a.key_id, account="acme")  # another account's key looks absent
    assert platform.authenticate is not None


def test_key_created_by_another_process_is_seen_at_once(store_url: str) -> None:
    server = Platform.open(database_url=store_url)
    try:
        assert server.list_keys() == []
        script = (
            "import sys; from qwen35.platform import Platform; "
            "p = Platform.open(database_url=sys.argv[1]); info, secret = p.create_key('cli'); print(secret)"
        )
        out = subprocess.run([sys.executable, "-c", script, store_url], capture_output=True, text=True, check=True)
        secret = out.stdout.strip().splitlines()[-1]
        info = server.authenticate(secret)
        assert info is not None and info.name == "cli"
        revoke = (
            "import sys; from qwen35.platform import Platform; "
            "Platform.open(database_url=sys.argv[1]).revoke_key(sys.argv[2])"
        )
        subprocess.run([sys.executable, "-c", revoke, store_url, info.key_id], check=True)
        assert server.authenticate(secret) is None
    finally:
        server.close()


def test_open_twice_and_data_dir(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QWEN35_HOME", str(tmp_path / "home"))
    with Platform.open() as first:
        _, secret = first.create_key("k")
    with Platform.open() as second:  # migrations at head: a no-op
        assert second.authenticate(secret) is not None
    assert (tmp_path / "home" / "platform.sqlite3").exists()
    with Platform.open(data_dir=tmp_path / "other") as third:
        assert third.authenticate(secret) is None
