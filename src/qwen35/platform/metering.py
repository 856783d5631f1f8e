"""Metering: admission (credit hold + rate limits), the usage ledger, and releasing an admission.

Owns: the `admissions`, `usage_records` and usage side of `ledger_entries` tables, mixed into `Platform`.
Imports nothing from qwen35 outside the platform.

Admission rule (documented for users): a request is admitted only if the account's balance minus the holds of
its requests in flight covers the request's worst case (every input token at the uncached rate, max_output_tokens
at the output rate, max_web_search_calls at the search fee). The hold is replaced by the exact cost when the usage
is recorded. Admission takes the account's write lock (SQLite BEGIN IMMEDIATE / PostgreSQL SELECT ... FOR
UPDATE), so concurrent requests - from any number of server processes - can never hold more than the balance:
a credit-limited balance never goes below zero as long as requests stay within what they declared.
Accounts that are not credit-limited (the operator's default) are metered and charged the same but never refused.

Store outages (documented for operators): a usage record the store refuses (locked, read-only, unreachable) is
written to the local usage journal (platform.journal: append + fsync) and `record_usage` returns it as if
recorded; the journal is replayed into the store as soon as it takes writes again (every second on a server,
and at start-up for the journal of a dead process on this host). Only when the journal cannot be written either
does `record_usage` raise StoreUnavailable - the API then refuses the answer (fail closed) - and the hold is
released once the store is back. A release the store refuses is journaled (or kept in memory) the same way.

Invariants: one usage record per request id (a second record_usage returns the first, charging nothing);
the balance changes only together with a ledger entry of the same amount, in one transaction; a record_usage that
returns has its record in the store or, durably, in the journal.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, Row, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from qwen35.platform import accounts as acc
from qwen35.platform import schema
from qwen35.platform.errors import InsufficientCredits, InvalidInput, NotFound, RateLimited, StoreUnavailable
from qwen35.platform.journal import Entry, UsageJournal
from qwen35.platform.keys import KeyInfo, KeyLimits, from_ms
from qwen35.platform.money import PriceCard, compute_cost, nanos_to_usd, worst_case_cost
from qwen35.platform.ratelimit import (
    WINDOW_MS,
    RateLimitStatus,
    Sample,
    WindowStats,
    evaluate,
    retry_after_header,
)
from qwen35.platform.store import read_tx, write_tx

# Holds of an owner-less admission (library / CLI use) free themselves after this; a server's admissions carry its
# instance id and are freed as soon as the instance is known dead (platform.liveness), long before.
DEFAULT_HOLD_TTL_MS = 3_600_000
log = logging.getLogger(__name__)
_PRUNE_EVERY = 200
_MAX_STATUS_LEN = 32
_INT32_MAX = 2**31 - 1

# Hot-path statements are built once: SQLAlchemy then reuses their compiled form, and building Core
# expressions per request costs more than the queries themselves.
_a, _acct, _u, _le = schema.admissions, schema.accounts, schema.usage_records, schema.ledger_entries
_ACCOUNT_FOR_UPDATE = (
    select(_acct.c.credit_limited, _acct.c.balance_nanos)
    .where(_acct.c.account_id == bindparam("p_account"))
    .with_for_update()
)
# Holds of the account's requests in flight, and how many of them are this key's (its concurrency).
_IN_FLIGHT = select(
    func.coalesce(func.sum(_a.c.hold_nanos), 0),
    func.coalesce(func.sum(case((_a.c.key_id == bindparam("p_key"), 1), else_=0)), 0),
).where(_a.c.account_id == bindparam("p_account"), _a.c.state == "active", _a.c.expires_at_ms > bindparam("p_now"))
_WINDOW = select(func.count(), func.coalesce(func.sum(_a.c.rate_tokens), 0), func.min(_a.c.created_at_ms)).where(
    _a.c.key_id == bindparam("p_key"), _a.c.created_at_ms > bindparam("p_since")
)
_WINDOW_SAMPLES = select(_a.c.created_at_ms, _a.c.rate_tokens).where(
    _a.c.key_id == bindparam("p_key"), _a.c.created_at_ms > bindparam("p_since")
)
_INSERT_ADMISSION = insert(_a)
_INSERT_USAGE = insert(_u)
_INSERT_LEDGER = insert(_le)
_DEBIT = (
    update(_acct)
    .where(_acct.c.account_id == bindparam("p_account"))
    .values(balance_nanos=_acct.c.balance_nanos - bindparam("p_cost"))
)
_SETTLE = (
    update(_a)
    .where(_a.c.admission_id == bindparam("p_admission"))
    .values(state="settled", rate_tokens=bindparam("p_tokens"))
)
_USAGE_BY_ID = select(_u).where(_u.c.request_id == bindparam("p_request"))


@dataclass(frozen=True)
class Admission:
    """A request let in: its hold, the prices it will be charged at, and the rate-limit headers to send."""

    admission_id: str
    key: KeyInfo
    account_id: str
    endpoint: str
    model: str
    prices: PriceCard
    hold_nanos: int
    max_input_tokens: int
    max_output_tokens: int
    rate_limit: RateLimitStatus
    admitted_at_ms: int

    def openai_headers(self) -> dict[str, str]:
        return self.rate_limit.openai_headers()

    def anthropic_headers(self) -> dict[str, str]:
        return self.rate_limit.anthropic_headers()


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    key_id: str
    account_id: str
    endpoint: str
    model: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    web_search_calls: int
    cost_nanos: int
    latency_ms: int
    status: str
    created_at: datetime | None

    @property
    def cost(self) -> Decimal:
        """Exact cost in USD (send as `usage.cost`)."""
        return nanos_to_usd(self.cost_nanos)


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _label(name: str, value: str, max_len: int = 64) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise InvalidInput(f"{name} must be a string of 1-{max_len} characters")
    return value


class Metering:
    """Mixin of Platform; relies on its engine, clock, effective limits and rate card."""

    _engine: Engine
    _now_ms: Callable[[], int]
    effective_limits: Callable[[KeyInfo], KeyLimits]
    hold_ttl_ms: int
    instance_id: str | None
    _store_ok: Callable[[], None]
    _store_failed: Callable[[BaseException], None]

    def __init__(self, journal: UsageJournal | None = None) -> None:
        self.hold_ttl_ms = DEFAULT_HOLD_TTL_MS
        self.journal = journal
        self._deferred: dict[str, Admission] = {}  # releases neither the store nor the journal took
        self._deferred_lock = threading.Lock()
        self._admits_since_prune = 0
        self._prune_lock = threading.Lock()

    # --- admission ------------------------------------------------------------------------------------------

    def admit(
        self,
        key: KeyInfo,
        endpoint: str,
        model: str,
        max_input_tokens: int,
        max_output_tokens: int,
        max_web_search_calls: int = 0,
    ) -> Admission:
        """Let a request in or raise InsufficientCredits / RateLimited, before any work is done.

        Every admission must end with exactly one of record_usage(...) (work was done, even partly) or
        release(...) (nothing to charge). `max_input_tokens` is the prompt length (cached tokens included).
        """
        _label("endpoint", endpoint)
        _label("model", model, 128)
        _count("max_input_tokens", max_input_tokens)
        _count("max_output_tokens", max_output_tokens)
        _count("max_web_search_calls", max_web_search_calls)
        limits = self.effective_limits(key)
        new_tokens = max_input_tokens + max_output_tokens
        now = self._now_ms()
        try:
            admission = self._admit(key, endpoint, model, max_input_tokens, max_output_tokens, max_web_search_calls,
                                    limits, new_tokens, now)
        except StoreUnavailable as exc:
            self._store_failed(exc)
            raise
        self._store_ok()
        self._maybe_prune(now)
        return admission

    def _admit(
        self, key: KeyInfo, endpoint: str, model: str, max_input_tokens: int, max_output_tokens: int,
        max_web_search_calls: int, limits: KeyLimits, new_tokens: int, now: int,
    ) -> Admission:
        with write_tx(self._engine) as conn:
            account = conn.execute(_ACCOUNT_FOR_UPDATE, {"p_account": key.account_id}).first()
            if account is None:
                raise NotFound(f"account {key.account_id!r} of key {key.key_id} no longer exists")
            prices = acc.price_for(conn, model, now)
            held, active = conn.execute(
                _IN_FLIGHT, {"p_account": key.account_id, "p_key": key.key_id, "p_now": now}
            ).one()
            stats = WindowStats(0, 0, None)
            since = now - WINDOW_MS
            if limits.requests_per_minute is not None or limits.tokens_per_minute is not None:
                count, tokens, oldest = conn.execute(_WINDOW, {"p_key": key.key_id, "p_since": since}).one()
                stats = WindowStats(int(count), int(tokens), None if oldest is None else int(oldest))

            def load_samples() -> list[Sample]:
                rows = conn.execute(_WINDOW_SAMPLES, {"p_key": key.key_id, "p_since": since}).all()
                return [Sample(int(r.created_at_ms), int(r.rate_tokens)) for r in rows]

            verdict = evaluate(stats, now, limits, new_tokens, int(active), load_samples)
            if verdict.exceeded is not None:
                status = verdict.status
                raise RateLimited(
                    verdict.exceeded,
                    verdict.retry_after_ms / 1000,
                    {**status.openai_headers(), **retry_after_header(verdict.retry_after_ms)},
                    {**status.anthropic_headers(), **retry_after_header(verdict.retry_after_ms)},
                    verdict.message,
                )
            hold = 0
            if account.credit_limited:
                hold = worst_case_cost(prices, max_input_tokens, max_output_tokens, max_web_search_calls)
                if int(account.balance_nanos) - int(held) < hold:
                    raise InsufficientCredits(key.account_id, int(account.balance_nanos), int(held), hold)
            admission_id = "adm_" + secrets.token_hex(12)
            conn.execute(
                _INSERT_ADMISSION,
                {
                    "admission_id": admission_id, "key_id": key.key_id, "account_id": key.account_id,
                    "hold_nanos": hold, "rate_tokens": new_tokens, "state": "active", "created_at_ms": now,
                    "expires_at_ms": now + self.hold_ttl_ms, "owner_id": self.instance_id,
                },
            )
        return Admission(
            admission_id=admission_id, key=key, account_id=key.account_id, endpoint=endpoint, model=model,
            prices=prices, hold_nanos=hold, max_input_tokens=max_input_tokens, max_output_tokens=max_output_tokens,
            rate_limit=verdict.status, admitted_at_ms=now,
        )

    def hold_web_search(self, admission: Admission) -> bool:
        """Admit one more web search of an admitted request, like its tokens: its fee joins the request's hold if
        the account's balance minus the holds in flight covers it (always, when not credit-limited). False: the
        request may not search again (it goes on without). The fee is charged only if the search is recorded."""
        fee = admission.prices.web_search_nanos_per_call
        now = self._now_ms()
        with write_tx(self._engine) as conn:
            account = conn.execute(_ACCOUNT_FOR_UPDATE, {"p_account": admission.account_id}).first()
            if account is None:
                return False
            if not account.credit_limited or fee == 0:
                return True
            held, _ = conn.execute(
                _IN_FLIGHT, {"p_account": admission.account_id, "p_key": admission.key.key_id, "p_now": now}
            ).one()
            if int(account.balance_nanos) - int(held) < fee:
                return False
            a = schema.admissions
            result = conn.execute(
                update(a)
                .where(a.c.admission_id == admission.admission_id, a.c.state == "active")
                .values(hold_nanos=a.c.hold_nanos + fee)
            )
            return bool(result.rowcount)

    def release(self, admission: Admission) -> None:
        """End an admission with nothing to charge (failed before any work). Idempotent; no-op once recorded."""
        try:
            self._release(admission.admission_id, admission.max_input_tokens)
        except StoreUnavailable as exc:
            self._store_failed(exc)
            if not self._journal({"op": "release", "admission_id": admission.admission_id,
                                  "rate_tokens": admission.max_input_tokens}):
                with self._deferred_lock:
                    self._deferred[admission.admission_id] = admission
            return
        self._store_ok()

    def _release(self, admission_id: str, rate_tokens: int) -> None:
        a = schema.admissions
        with write_tx(self._engine) as conn:
            conn.execute(
                update(a)
                .where(a.c.admission_id == admission_id, a.c.state.in_(("active", "orphaned")))
                .values(state="released", rate_tokens=rate_tokens)
            )

    # --- ledger ---------------------------------------------------------------------------------------------

    def record_usage(
        self,
        request_id: str,
        admission_or_key: Admission | KeyInfo,
        endpoint: str,
        model: str,
        input_tokens: int,
        cached_input_tokens: int = 0,
        output_tokens: int = 0,
        reasoning_tokens: int = 0,
        web_search_calls: int = 0,
        latency_ms: int = 0,
        status: str = "completed",
    ) -> UsageRecord:
        """Write the request's usage record and charge it, once per request_id (a repeat returns the first).

        `input_tokens` includes cached ones; `output_tokens` includes reasoning ones. With an Admission the
        prices are those in force at admission and the hold is settled; with a bare KeyInfo, today's prices.
        """
        _label("request_id", request_id, 128)
        _label("endpoint", endpoint)
        _label("model", model, 128)
        _label("status", status, _MAX_STATUS_LEN)
        for name, value in (
            ("input_tokens", input_tokens), ("cached_input_tokens", cached_input_tokens),
            ("output_tokens", output_tokens), ("reasoning_tokens", reasoning_tokens),
            ("web_search_calls", web_search_calls), ("latency_ms", latency_ms),
        ):
            _count(name, value)
        if web_search_calls > _INT32_MAX:
            raise InvalidInput("web_search_calls is out of range")
        latency_ms = min(latency_ms, _INT32_MAX)  # a 24-day request is recorded, not refused
        if reasoning_tokens > output_tokens:
            raise InvalidInput("reasoning_tokens cannot exceed output_tokens (output counts reasoning tokens)")
        admission = admission_or_key if isinstance(admission_or_key, Admission) else None
        key = admission.key if admission is not None else admission_or_key
        if not isinstance(key, KeyInfo):
            raise InvalidInput("record_usage needs an Admission or a KeyInfo")
        now = self._now_ms()

        def priced(prices: PriceCard) -> UsageRecord:
            return UsageRecord(
                request_id=request_id, key_id=key.key_id, account_id=key.account_id, endpoint=endpoint,
                model=model, input_tokens=input_tokens, cached_input_tokens=cached_input_tokens,
                output_tokens=output_tokens, reasoning_tokens=reasoning_tokens, web_search_calls=web_search_calls,
                cost_nanos=compute_cost(prices, input_tokens, cached_input_tokens, output_tokens, web_search_calls),
                latency_ms=latency_ms, status=status, created_at=from_ms(now),
            )

        admission_id = admission.admission_id if admission is not None else None
        try:
            try:
                with write_tx(self._engine) as conn:
                    # Insert first: the primary key on request_id makes a repeat fail here, before anything moves.
                    record = priced(admission.prices if admission is not None else acc.price_for(conn, model, now))
                    self._write_charge(conn, record, now, admission_id)
            except IntegrityError:
                # This request id was recorded before (or concurrently, by another thread or server): theirs stands.
                with read_tx(self._engine) as conn:
                    existing = self._usage(conn, request_id)
                if existing is None:
                    raise
                record = existing
        except StoreUnavailable as exc:
            self._store_failed(exc)
            if admission is None:
                raise  # the price in force is in the store: nothing to journal without an admission's prices
            record = priced(admission.prices)
            entry = {k: v for k, v in record.__dict__.items() if k != "created_at"}
            if not self._journal({"op": "record", **entry, "admission_id": admission_id, "at_ms": now}):
                raise
            log.warning("usage of %s journaled locally (the store refused it: %s)", request_id, exc)
            return record
        self._store_ok()
        return record

    # --- the journal: settlements the store refused ---------------------------------------------------------

    def defer_release(self, admission: Admission) -> None:
        """Release this admission once the store takes writes again (the caller refused the answer because its
        record could be written nowhere); retried by `replay_journal`."""
        with self._deferred_lock:
            self._deferred[admission.admission_id] = admission

    def _journal(self, entry: Entry) -> bool:
        """Append to the local journal (durably); False when there is none or the disk refuses too."""
        if self.journal is None:
            return False
        try:
            self.journal.append(entry)
        except OSError as exc:
            log.error("the usage journal refused an entry as well: %s", exc)
            return False
        return True

    def _apply(self, entry: Entry) -> None:
        if entry.get("op") == "release":
            self._release(str(entry["admission_id"]), int(entry["rate_tokens"]))
            return
        fields = {name: entry[name] for name in UsageRecord.__dataclass_fields__ if name != "created_at"}
        record = UsageRecord(**fields, created_at=from_ms(int(entry["at_ms"])))
        try:
            with write_tx(self._engine) as conn:
                self._write_charge(conn, record, int(entry["at_ms"]), entry.get("admission_id"))
        except IntegrityError:
            pass  # recorded already (a replay after a crash between the store's commit and the truncate)

    def replay_journal(self, adopt: bool = False) -> int:
        """Push journaled settlements (this process's; with `adopt`, also dead processes' journals on this host)
        and deferred releases into the store; returns how many went in. Raises StoreUnavailable while it is down."""
        applied = 0
        try:
            if self.journal is not None:
                applied += self.journal.replay(self._apply)
                if adopt:
                    applied += self.journal.adopt_orphans(self._apply)
            with self._deferred_lock:
                deferred = list(self._deferred.values())
            for admission in deferred:
                self._release(admission.admission_id, admission.max_input_tokens)
                with self._deferred_lock:
                    self._deferred.pop(admission.admission_id, None)
                applied += 1
        except StoreUnavailable as exc:
            self._store_failed(exc)
            raise
        if applied:
            self._store_ok()
            log.warning("%d journaled settlements reached the store", applied)
        return applied

    def _pending_counts(self) -> dict[str, int]:
        with self._deferred_lock:
            deferred = len(self._deferred)
        return {"journal_pending": self.journal.num_pending if self.journal is not None else 0,
                "releases_pending": deferred}

    def _write_charge(self, conn: Connection, record: UsageRecord, now: int, admission_id: str | None) -> None:
        values = {k: v for k, v in record.__dict__.items() if k != "created_at"}
        conn.execute(_INSERT_USAGE, {**values, "created_at_ms": now})
        conn.execute(
            _INSERT_LEDGER,
            {
                "account_id": record.account_id, "kind": "usage", "amount_nanos": -record.cost_nanos,
                "request_id": record.request_id, "note": None, "created_at_ms": now,
            },
        )
        if record.cost_nanos:
            conn.execute(_DEBIT, {"p_account": record.account_id, "p_cost": record.cost_nanos})
        if admission_id is not None:
            # The rate window now counts the tokens actually used instead of the worst case.
            conn.execute(
                _SETTLE, {"p_admission": admission_id, "p_tokens": record.input_tokens + record.output_tokens}
            )

    @staticmethod
    def _usage(conn: Connection, request_id: str) -> UsageRecord | None:
        row = conn.execute(_USAGE_BY_ID, {"p_request": request_id}).first()
        return None if row is None else _usage_from_row(row)

    def get_usage(self, request_id: str) -> UsageRecord | None:
        with read_tx(self._engine) as conn:
            return self._usage(conn, request_id)

    def list_usage(
        self, account: str | None = None, key_id: str | None = None, limit: int = 100, before_ms: int | None = None
    ) -> list[UsageRecord]:
        """Newest first; filter by account and/or key; page with `before_ms` (created_at_ms of the last row)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be an integer in 1..10000")
        u = schema.usage_records
        query = select(u).order_by(u.c.created_at_ms.desc(), u.c.request_id.desc()).limit(limit)
        if account is not None:
            query = query.where(u.c.account_id == account)
        if key_id is not None:
            query = query.where(u.c.key_id == key_id)
        if before_ms is not None:
            query = query.where(u.c.created_at_ms < before_ms)
        with read_tx(self._engine) as conn:
            return [_usage_from_row(row) for row in conn.execute(query).all()]

    def ledger_sum(self, account: str) -> int:
        """Σ ledger entries of an account in nano-dollars (equals its balance: an audit check)."""
        le = schema.ledger_entries
        with read_tx(self._engine) as conn:
            total = conn.execute(
                select(func.coalesce(func.sum(le.c.amount_nanos), 0)).where(le.c.account_id == account)
            ).scalar_one()
        return int(total)

    # --- housekeeping ---------------------------------------------------------------------------------------

    def _maybe_prune(self, now: int) -> None:
        with self._prune_lock:
            self._admits_since_prune += 1
            if self._admits_since_prune < _PRUNE_EVERY:
                return
            self._admits_since_prune = 0
        self.prune_admissions(now)

    def prune_admissions(self, now_ms: int | None = None) -> int:
        """Delete admissions that no longer count for anything (out of the window and not in flight)."""
        now = self._now_ms() if now_ms is None else now_ms
        a = schema.admissions
        cutoff = now - 2 * WINDOW_MS
        with write_tx(self._engine) as conn:
            result = conn.execute(
                delete(a).where(
                    a.c.created_at_ms < cutoff, or_(a.c.state != "active", a.c.expires_at_ms < now)
                )
            )
        return int(result.rowcount or 0)

    # --- async wrappers: the database calls block, so the event loop hands them to a thread ----------------

    async def aadmit(self, *args: object, **kwargs: object) -> Admission:
        return await asyncio.to_thread(self.admit, *args, **kwargs)  # type: ignore[arg-type]

    async def arecord_usage(self, *args: object, **kwargs: object) -> UsageRecord:
        return await asyncio.to_thread(self.record_usage, *args, **kwargs)  # type: ignore[arg-type]

    async def arelease(self, admission: Admission) -> None:
        await asyncio.to_thread(self.release, admission)

    async def ahold_web_search(self, admission: Admission) -> bool:
        return await asyncio.to_thread(self.hold_web_search, admission)


def _usage_from_row(row: Row) -> UsageRecord:
    return UsageRecord(
        request_id=row.request_id,
        key_id=row.key_id,
        account_id=row.account_id,
        endpoint=row.endpoint,
        model=row.model,
        input_tokens=int(row.input_tokens),
        cached_input_tokens=int(row.cached_input_tokens),
        output_tokens=int(row.output_tokens),
        reasoning_tokens=int(row.reasoning_tokens),
        web_search_calls=int(row.web_search_calls),
        cost_nanos=int(row.cost_nanos),
        latency_ms=int(row.latency_ms),
        status=row.status,
        created_at=from_ms(int(row.created_at_ms)),
    )
