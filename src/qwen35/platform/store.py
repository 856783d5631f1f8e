"""Database access: engine construction for SQLite (WAL) and PostgreSQL, transactions, migrations.

Owns: turning `data_dir` / `database_url` into a SQLAlchemy Engine with the right locking behaviour, and
running the Alembic migrations (package `qwen35.platform.migrations`) to head. Imports nothing from qwen35
outside the platform.
Invariants: on SQLite every write transaction starts with BEGIN IMMEDIATE (it takes the write lock up front, so
two writers never deadlock upgrading a read lock) and read transactions use plain BEGIN (WAL readers never block);
on PostgreSQL writers serialise per account with SELECT ... FOR UPDATE. `synchronous=NORMAL` in WAL mode keeps
every committed transaction across a process kill (kill -9); only an OS crash/power loss can lose the last ones.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, InternalError, OperationalError

from qwen35.platform.errors import InvalidInput, StoreUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration; a test checks it against the scripts. Knowing it lets an up-to-date store open without
# importing Alembic (a second of start-up on a busy machine, felt on every `qwen35 keys ...` command).
HEAD_REVISION = "0003_liveness"
DB_FILENAME = "platform.sqlite3"
_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_READ_OPTION = "qwen35_read_only"


def default_data_dir() -> Path:
    env = os.environ.get("QWEN35_HOME")
    return Path(env).expanduser() if env else Path.home() / ".qwen35"


def resolve_url(data_dir: Path | str | None, database_url: str | None) -> str:
    """The SQLAlchemy URL to use; a bare postgresql:// URL gets the psycopg (v3) driver.

    Order: `database_url`, then $QWEN35_DATABASE_URL, then a SQLite file in `data_dir` ($QWEN35_HOME, ~/.qwen35).
    """
    if not database_url and data_dir is None:
        database_url = os.environ.get("QWEN35_DATABASE_URL") or None
    if database_url:
        try:
            url = make_url(database_url)
        except ArgumentError:
            raise InvalidInput(f"not a valid database URL: {database_url!r}") from None
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise InvalidInput(f"unsupported database {url.get_backend_name()!r}: use sqlite or postgresql")
        return url.render_as_string(hide_password=False)
    directory = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create the platform data directory {directory}: {exc}") from None
    return f"sqlite+pysqlite:///{directory / DB_FILENAME}"


def create_store_engine(url: str, lock_timeout_s: float | None = None) -> Engine:
    """`lock_timeout_s` (default 30 s): how long a statement waits for a lock another connection holds before the
    store counts as unavailable (SQLite busy_timeout, PostgreSQL lock_timeout) - a locked store is a 503, not a
    hang."""
    timeout_ms = _SQLITE_BUSY_TIMEOUT_MS if lock_timeout_s is None else max(1, int(lock_timeout_s * 1000))
    if url.startswith("sqlite"):
        return _sqlite_engine(url, timeout_ms)
    # pool_pre_ping: a long-running server survives a PostgreSQL restart without a failed request.
    engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET lock_timeout = {timeout_ms}")
        cursor.close()
        dbapi_connection.commit()

    _LOCK_WAITS[engine] = timeout_ms / 1000
    return engine


def _sqlite_engine(url: str, busy_timeout_ms: int = _SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    # pysqlite's own transaction handling is switched off (isolation_level=None below) so that we can emit
    # BEGIN IMMEDIATE ourselves; the pool keeps connections (and their PRAGMAs) across requests.
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        pool_size=8,
        max_overflow=16,
    )
    _LOCK_WAITS[engine] = busy_timeout_ms / 1000

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch to WAL. Changing the journal mode can be refused with "database is locked" at once, without the busy
    handler, while another process opens the same new file (seen in CI: two processes' first open): retry a while."""
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextmanager
def unavailable_as_platform_error(engine: Engine) -> Iterator[None]:
    """Connection-level database failures become StoreUnavailable; constraint errors pass through untouched."""
    try:
        yield
    except (OperationalError, InterfaceError, InternalError) as exc:  # InternalError: e.g. a read-only PostgreSQL
        where = engine.url.render_as_string(hide_password=True)
        raise StoreUnavailable(f"the platform store {where} is unavailable: {exc.orig or exc}") from exc


_SQLITE_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_LOCK_WAITS: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


@contextmanager
def _writer_lock(engine: Engine) -> Iterator[None]:
    """SQLite only: threads of one process queue for the write lock here, where a release wakes the next at once;
    left to SQLite's busy handler they would poll with sleeps of up to 100 ms (seen as p99 spikes). Other
    processes still meet at the database lock (busy_timeout). The queue is bounded by the same wait: with the
    database locked, the tenth writer fails after one lock timeout, not after ten."""
    if engine.dialect.name != "sqlite":
        yield
        return
    with _LOCKS_GUARD:
        lock = _SQLITE_WRITE_LOCKS.setdefault(engine, threading.Lock())
    wait = _LOCK_WAITS.get(engine, _SQLITE_BUSY_TIMEOUT_MS / 1000)
    if not lock.acquire(timeout=wait):
        where = engine.url.render_as_string(hide_password=True)
        raise StoreUnavailable(f"the platform store {where} is unavailable: its write lock was busy for {wait:g} s")
    try:
        yield
    finally:
        lock.release()


_WRITES_IN_PROGRESS: weakref.WeakKeyDictionary[Engine, dict[int, float]] = weakref.WeakKeyDictionary()


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A transaction that may write; commits on success, rolls back on any exception. While it runs (waiting for
    a lock included) it is listed for `oldest_write_age_s`."""
    token = object()
    with _LOCKS_GUARD:
        in_progress = _WRITES_IN_PROGRESS.setdefault(engine, {})
        in_progress[id(token)] = time.monotonic()
    try:
        with _writer_lock(engine), unavailable_as_platform_error(engine), engine.begin() as conn:
            yield conn
    finally:
        with _LOCKS_GUARD:
            in_progress.pop(id(token), None)


def oldest_write_age_s(engine: Engine) -> float | None:
    """Seconds the oldest write transaction in progress has been running (None: none). Writes take milliseconds;
    one that has run for seconds is waiting on a lock - a locked store, seen before its lock timeout ends it."""
    with _LOCKS_GUARD:
        starts = list(_WRITES_IN_PROGRESS.get(engine, {}).values())
    return time.monotonic() - min(starts) if starts else None


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read-only snapshot (never takes SQLite's write lock)."""
    with unavailable_as_platform_error(engine), engine.connect() as conn:
        conn = conn.execution_options(**{_READ_OPTION: True})
        with conn.begin():
            yield conn


def _alembic_config(conn: Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def current_revision(engine: Engine) -> str | None:
    """The store's migration revision, or None for a fresh database."""
    with read_tx(engine) as conn:
        try:
            with conn.begin_nested():
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:  # no alembic_version table yet
            return None


def migrate_to_head(engine: Engine) -> None:
    """Run pending migrations (no-op at head). Safe when several processes open the store at once."""
    if current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    with unavailable_as_platform_error(engine), engine.connect() as conn:
        command.upgrade(_alembic_config(conn), "head")
        conn.commit()


def head_revision() -> str:
    """The head according to the migration scripts (imports Alembic)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None  # the package always ships at least one migration
    return head


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())
