"""Migrations: a migrated store matches the schema the code queries; opening is safe from several processes."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from qwen35.platform import Platform
from qwen35.platform.schema import metadata
from qwen35.platform.store import HEAD_REVISION, current_revision, head_revision


def test_migrated_schema_matches_metadata(platform: Platform) -> None:
    with platform.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert diff == []
    assert version == head_revision() == HEAD_REVISION == current_revision(platform.engine)


def test_seeded_rows(platform: Platform) -> None:
    default = platform.get_account("default")
    assert default.is_default and not default.credit_limited and default.balance_nanos == 0
    card = platform.price_for("anything")
    assert (card.input_nanos_per_token, card.cached_input_nanos_per_token, card.output_nanos_per_token,
            card.web_search_nanos_per_call) == (40, 20, 70, 13_000_000)


def test_concurrent_first_open_from_processes(store_url: str) -> None:
    script = (
        "import sys; from qwen35.platform import Platform; "
        "p = Platform.open(database_url=sys.argv[1]); p.create_key('k'); p.close()"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, store_url], stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    with Platform.open(database_url=store_url) as p:
        assert len(p.list_keys()) == 2
        assert len(p.list_accounts()) == 1  # the seed ran once


def test_unreachable_store_is_a_typed_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    import pytest

    from qwen35.platform import InvalidInput, StoreUnavailable

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        Platform.open(data_dir=blocker / "sub")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreUnavailable) as info:
        Platform.open(database_url=f"postgresql://u:secretpw@127.0.0.1:{port}/db?connect_timeout=2")
    assert "secretpw" not in str(info.value)
    with pytest.raises(InvalidInput):
        Platform.open(database_url="mysql://x@127.0.0.1/db")
    with pytest.raises(InvalidInput):
        Platform.open(database_url="::not a url::")
