"""Fixtures: a fresh Platform on SQLite (always) and on PostgreSQL (when QWEN35_TEST_POSTGRES_URL is set).

Each PostgreSQL test gets its own schema (search_path in the URL), dropped afterwards, so tests never see
each other's rows and the database needs no cleanup between runs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen35.platform import Platform

PG_ENV = "QWEN35_TEST_POSTGRES_URL"


class FakeClock:
    """A settable clock (epoch seconds) so rate-limit windows and expiry are tested without sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _pg_schema_url(base: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    from qwen35.platform.store import resolve_url

    url = resolve_url(None, base)
    schema_name = "t_" + secrets.token_hex(6)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema_name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for a fresh, empty store on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'platform.sqlite3'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} not set: PostgreSQL backend not tested")
    yield from _pg_schema_url(base)


@pytest.fixture
def platform(store_url: str, clock: FakeClock) -> Iterator[Platform]:
    p = Platform.open(database_url=store_url, clock=clock)
    try:
        yield p
    finally:
        p.close()
