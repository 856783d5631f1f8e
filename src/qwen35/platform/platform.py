"""The Platform facade: one object the server, the CLI and the dashboard call.

Owns: opening the store (migrating it to head), transactions around the account/key/price operations, and the
clock. Metering (admit / record_usage / release, the usage journal) lives in `metering.py`, owner liveness
(server instances, heartbeat, freeing a dead server's holds) in `liveness.py`, store health in `health.py`,
revocations seen by open streams in `revocations.py`; all are mixed in here so callers see one object. Imports nothing from qwen35 outside the platform.
Invariant: no state that another process could change is cached in memory - a key created or revoked by
`qwen35 keys ...` while the server runs takes effect on the server's next request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine

from qwen35.platform import accounts as acc
from qwen35.platform.accounts import DEFAULT_ACCOUNT, AccountInfo
from qwen35.platform.documents import DocumentStore
from qwen35.platform.errors import InvalidInput, PlatformError
from qwen35.platform.health import StoreHealth
from qwen35.platform.journal import UsageJournal
from qwen35.platform.keys import (
    ROLE_ADMIN,
    ROLE_USER,
    KeyInfo,
    KeyLimits,
    new_secret,
    parse_key_id,
    to_ms,
    validate_key_name,
)
from qwen35.platform.liveness import HEARTBEAT_S, STALE_AFTER_S, Liveness
from qwen35.platform.metering import Metering
from qwen35.platform.money import DEFAULT_MODEL, PriceCard, usd_to_nanos
from qwen35.platform.revocations import POLL_S, Revocations
from qwen35.platform.store import (
    create_store_engine,
    default_data_dir,
    migrate_to_head,
    read_tx,
    resolve_url,
    write_tx,
)
from qwen35.platform.usage_stats import UsageBucket, usage_buckets

Clock = Callable[[], float]  # epoch seconds, like time.time
log = logging.getLogger(__name__)


JOURNAL_DIRNAME = "usage-journal"
REPLAY_EVERY_S = 1.0


class Platform(Metering, Liveness, StoreHealth, Revocations):
    """Accounts, keys, credits, rate card, admission, usage ledger and documents over one database."""

    def __init__(
        self, engine: Engine, url: str, clock: Clock = time.time, default_limits: KeyLimits | None = None,
        journal: UsageJournal | None = None,
    ):
        self._engine = engine
        self.url = url
        self._clock = clock
        self.default_limits = default_limits or KeyLimits()
        self.documents = DocumentStore(engine, self._now_ms)
        Metering.__init__(self, journal)
        Liveness.__init__(self)
        StoreHealth.__init__(self)
        Revocations.__init__(self)

    @classmethod
    def open(
        cls,
        data_dir: Path | str | None = None,
        database_url: str | None = None,
        *,
        clock: Clock = time.time,
        default_limits: KeyLimits | None = None,
        journal_dir: Path | str | None = None,
        journal: bool = True,
        lock_timeout_s: float | None = None,
    ) -> Platform:
        """Open (creating and migrating as needed) the store.

        `database_url` wins when given (sqlite:///... or postgresql://...); otherwise a SQLite file in `data_dir`
        (default $QWEN35_HOME or ~/.qwen35). `default_limits` apply to keys whose own limits are unset. The usage
        journal (records the store refused, see metering) lives in `journal_dir`, by default `usage-journal/` next
        to the SQLite file or in the data directory; `journal=False` turns it off (a refused record then refuses
        the answer). `lock_timeout_s` bounds a wait for a locked store (default 30 s) before StoreUnavailable.
        """
        url = resolve_url(data_dir, database_url)
        engine = create_store_engine(url, lock_timeout_s)
        migrate_to_head(engine)
        usage_journal = UsageJournal(_journal_dir(url, data_dir, journal_dir)) if journal else None
        return cls(engine, url, clock=clock, default_limits=default_limits, journal=usage_journal)

    def start_instance(
        self, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S, background: bool = True
    ) -> str:
        """Register as a server instance (see liveness), replay the journals of dead processes on this host, and
        (background=True) push journaled settlements into the store every second while it refuses them."""
        if background and self.instance_id is None:
            self.every(min(REPLAY_EVERY_S, heartbeat_s), self.replay_journal)
            self.every(POLL_S, self.poll_revocations)  # ends streams of keys revoked by other processes
        instance_id = Liveness.start_instance(self, heartbeat_s, stale_after_s, background)
        self.poll_revocations()
        try:
            self.replay_journal(adopt=True)
        except PlatformError as exc:
            log.warning("journaled usage not replayed yet: %s", exc)
        return instance_id

    def close(self) -> None:
        try:
            self.stop_instance()
        except PlatformError as exc:  # the store is down: the other servers' sweep frees our holds
            log.warning("could not mark this server stopped: %s", exc)
        if self.journal is not None:
            try:
                self.replay_journal()
            except PlatformError as exc:
                log.error("%d usage records stay in the journal %s for the next start: %s",
                          self.journal.num_pending, self.journal.directory, exc)
            self.journal.close()
        self._engine.dispose()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        return self._engine

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- keys -----------------------------------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        account: str | None = None,
        admin: bool = False,
        expires_at: datetime | None = None,
        limits: KeyLimits | None = None,
    ) -> tuple[KeyInfo, str]:
        """Create a key; returns (info, secret). The secret is shown once and stored only as a hash."""
        validate_key_name(name)
        account_id = acc.validate_account_id(account) if account is not None else DEFAULT_ACCOUNT
        if expires_at is not None and not isinstance(expires_at, datetime):
            raise InvalidInput("expires_at must be a datetime")
        now = self._now_ms()
        expires_ms = to_ms(expires_at) if expires_at is not None else None
        if expires_ms is not None and expires_ms <= now:
            raise InvalidInput("expires_at must be in the future")
        new = new_secret()
        with write_tx(self._engine) as conn:
            info = acc.insert_key(
                conn, new, name, account_id, ROLE_ADMIN if admin else ROLE_USER, expires_ms, limits or KeyLimits(), now
            )
        return info, new.secret

    def create_first_admin_key(self, name: str = "admin (first run)") -> tuple[KeyInfo, str] | None:
        """On a store with no key at all, create an admin key of the default account and return (info, secret);
        otherwise None. `qwen35 serve` prints that secret once (as Jupyter prints its token); the check and the
        insert share one write transaction, so two servers opening one empty store make one key, not two."""
        now = self._now_ms()
        new = new_secret()
        with write_tx(self._engine) as conn:
            acc.lock_account(conn, DEFAULT_ACCOUNT)  # PostgreSQL: serialises concurrent first starts
            if acc.list_keys(conn, None):
                return None
            info = acc.insert_key(conn, new, name, DEFAULT_ACCOUNT, ROLE_ADMIN, None, KeyLimits(), now)
        return info, new.secret

    def authenticate(self, secret: str) -> KeyInfo | None:
        """The key for this secret, or None when unknown, malformed, revoked or expired."""
        if not isinstance(secret, str):
            return None
        key_id = parse_key_id(secret.strip())
        if key_id is None:
            return None
        with read_tx(self._engine) as conn:
            info = acc.find_key_by_secret(conn, key_id, secret.strip())
        if info is None or not info.is_active(datetime.fromtimestamp(self._clock(), tz=UTC)):
            return None
        return info

    async def aauthenticate(self, secret: str) -> KeyInfo | None:
        return await asyncio.to_thread(self.authenticate, secret)

    def get_key(self, key_id: str, account: str | None = None) -> KeyInfo:
        with read_tx(self._engine) as conn:
            return acc.get_key(conn, key_id, account)

    def list_keys(self, account: str | None = None) -> list[KeyInfo]:
        """Keys of one account (all accounts when None), oldest first."""
        with read_tx(self._engine) as conn:
            return acc.list_keys(conn, account)

    def revoke_key(self, key_id: str, account: str | None = None) -> KeyInfo:
        """Revoke at once (idempotent). With `account`, a key of another account is NotFound."""
        with write_tx(self._engine) as conn:
            info = acc.revoke_key(conn, key_id, account, self._now_ms())
        self._revoked_here(info.key_id)  # this process's open streams of the key end at their next step
        return info

    def effective_limits(self, key: KeyInfo) -> KeyLimits:
        """The key's own limits, each unset one replaced by the platform default."""
        d = self.default_limits
        own = key.limits
        return KeyLimits(
            own.requests_per_minute if own.requests_per_minute is not None else d.requests_per_minute,
            own.tokens_per_minute if own.tokens_per_minute is not None else d.tokens_per_minute,
            own.max_concurrent if own.max_concurrent is not None else d.max_concurrent,
        )

    # --- accounts and credits -------------------------------------------------------------------------------

    def create_account(self, account: str, credit_limited: bool = True) -> AccountInfo:
        with write_tx(self._engine) as conn:
            return acc.create_account(conn, account, credit_limited, self._now_ms())

    def get_account(self, account: str) -> AccountInfo:
        with read_tx(self._engine) as conn:
            return acc.get_account(conn, account, self._now_ms())

    def list_accounts(self) -> list[AccountInfo]:
        with read_tx(self._engine) as conn:
            return acc.list_accounts(conn, self._now_ms())

    def add_credits(self, account: str, amount_usd: Decimal | str | int, note: str | None = None) -> AccountInfo:
        """Add (negative: remove) credits; turns credit limiting on for the account."""
        nanos = usd_to_nanos(amount_usd)
        with write_tx(self._engine) as conn:
            return acc.add_credits(conn, account, nanos, note, self._now_ms())

    def set_credit_limited(self, account: str, credit_limited: bool) -> AccountInfo:
        with write_tx(self._engine) as conn:
            return acc.set_credit_limited(conn, account, credit_limited, self._now_ms())

    def usage_buckets(
        self, bucket: str, since_ms: int, until_ms: int | None = None, account: str | None = None,
        key_id: str | None = None,
    ) -> list[UsageBucket]:
        """Usage summed per hour or day (UTC-aligned) from `since_ms` to `until_ms` (default now), oldest first."""
        until = self._now_ms() + 1 if until_ms is None else until_ms
        with read_tx(self._engine) as conn:
            return usage_buckets(conn, bucket, since_ms, until, account, key_id)

    # --- rate card ------------------------------------------------------------------------------------------

    def price_for(self, model: str) -> PriceCard:
        with read_tx(self._engine) as conn:
            return acc.price_for(conn, model, self._now_ms())

    def list_prices(self) -> list[PriceCard]:
        with read_tx(self._engine) as conn:
            return acc.current_prices(conn, self._now_ms())

    def set_price(
        self,
        model: str = DEFAULT_MODEL,
        *,
        input_per_million: Decimal | str,
        cached_input_per_million: Decimal | str,
        output_per_million: Decimal | str,
        web_search_per_call: Decimal | str,
        effective_at: datetime | None = None,
    ) -> PriceCard:
        """Set a model's prices (USD); they apply to requests admitted from `effective_at` (default now) on."""
        acc.validate_model(model)
        card = PriceCard.from_usd(
            model, input_per_million, cached_input_per_million, output_per_million, web_search_per_call,
            effective_at_ms=to_ms(effective_at) if effective_at is not None else self._now_ms(),
        )
        with write_tx(self._engine) as conn:
            return acc.set_price(conn, card)


def _journal_dir(url: str, data_dir: Path | str | None, journal_dir: Path | str | None) -> Path:
    if journal_dir is not None:
        return Path(journal_dir).expanduser()
    if url.startswith("sqlite") and "/" in url.partition(":///")[2]:
        return Path(url.partition(":///")[2]).parent / JOURNAL_DIRNAME
    return (Path(data_dir).expanduser() if data_dir is not None else default_data_dir()) / JOURNAL_DIRNAME
