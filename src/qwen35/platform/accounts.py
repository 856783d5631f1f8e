"""Accounts, API keys, credits and the rate card: the rows and the queries on them.

Owns: every read and write of `accounts`, `api_keys`, `prices` and the credit side of `ledger_entries`. Functions
take an open SQLAlchemy Connection (the caller owns the transaction). Imports nothing from qwen35 outside the
platform.
Invariants: a balance moves only together with a ledger entry of the same amount in the same transaction; a key's
secret hash is written once and never read back out of this module except for the constant-time comparison.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Row, and_, bindparam, case, func, insert, or_, select, update

from qwen35.platform import schema
from qwen35.platform.errors import Conflict, InvalidInput, NotFound
from qwen35.platform.keys import KeyInfo, KeyLimits, NewSecret, from_ms, secret_matches
from qwen35.platform.money import DEFAULT_MODEL, PriceCard

DEFAULT_ACCOUNT = "default"
_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_MODEL_RE = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,127})$")


@dataclass(frozen=True)
class AccountInfo:
    account_id: str
    credit_limited: bool
    balance_nanos: int
    held_nanos: int
    is_default: bool
    created_at: datetime | None

    @property
    def available_nanos(self) -> int:
        return self.balance_nanos - self.held_nanos


def validate_account_id(account_id: str) -> str:
    if not isinstance(account_id, str) or not _ACCOUNT_RE.match(account_id):
        raise InvalidInput(
            f"account name {account_id!r} is invalid: use 1-64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    return account_id


def validate_model(model: str) -> str:
    if not isinstance(model, str) or not _MODEL_RE.match(model):
        raise InvalidInput(f"model name {model!r} is invalid")
    return model


# --- accounts -------------------------------------------------------------------------------------------------


def _held(conn: Connection, account_id: str, now_ms: int) -> int:
    a = schema.admissions
    held = conn.execute(
        select(func.coalesce(func.sum(a.c.hold_nanos), 0)).where(
            a.c.account_id == account_id, a.c.state == "active", a.c.expires_at_ms > now_ms
        )
    ).scalar_one()
    return int(held)


def _account_from_row(row: Row, held_nanos: int) -> AccountInfo:
    return AccountInfo(
        account_id=row.account_id,
        credit_limited=bool(row.credit_limited),
        balance_nanos=int(row.balance_nanos),
        held_nanos=held_nanos,
        is_default=bool(row.is_default),
        created_at=from_ms(row.created_at_ms),
    )


def create_account(conn: Connection, account_id: str, credit_limited: bool, now_ms: int) -> AccountInfo:
    validate_account_id(account_id)
    if conn.execute(select(schema.accounts.c.account_id).where(schema.accounts.c.account_id == account_id)).first():
        raise Conflict(f"account {account_id!r} already exists")
    conn.execute(
        insert(schema.accounts).values(
            account_id=account_id, credit_limited=credit_limited, balance_nanos=0, is_default=False,
            created_at_ms=now_ms,
        )
    )
    return get_account(conn, account_id, now_ms)


def get_account(conn: Connection, account_id: str, now_ms: int) -> AccountInfo:
    row = conn.execute(select(schema.accounts).where(schema.accounts.c.account_id == account_id)).first()
    if row is None:
        raise NotFound(f"account {account_id!r} does not exist (create it with `qwen35 accounts create {account_id}`)")
    return _account_from_row(row, _held(conn, account_id, now_ms))


def list_accounts(conn: Connection, now_ms: int) -> list[AccountInfo]:
    rows = conn.execute(select(schema.accounts).order_by(schema.accounts.c.account_id)).all()
    return [_account_from_row(row, _held(conn, row.account_id, now_ms)) for row in rows]


def add_credits(conn: Connection, account_id: str, amount_nanos: int, note: str | None, now_ms: int) -> AccountInfo:
    """Credit (or, with a negative amount, debit) an account through a ledger entry.

    Adding credits turns credit limiting on: that is how an operator puts the default account on a balance.
    """
    if amount_nanos == 0:
        raise InvalidInput("credit amount must not be zero")
    get_account(conn, account_id, now_ms)  # NotFound before writing anything
    conn.execute(
        insert(schema.ledger_entries).values(
            account_id=account_id, kind="credit", amount_nanos=amount_nanos, request_id=None,
            note=(note or None) and note[:256], created_at_ms=now_ms,
        )
    )
    conn.execute(
        update(schema.accounts)
        .where(schema.accounts.c.account_id == account_id)
        .values(balance_nanos=schema.accounts.c.balance_nanos + amount_nanos, credit_limited=True)
    )
    return get_account(conn, account_id, now_ms)


def lock_account(conn: Connection, account_id: str) -> None:
    """Take the account row's write lock for the rest of the transaction (SELECT ... FOR UPDATE; SQLite's
    write transactions are exclusive already)."""
    conn.execute(select(schema.accounts.c.account_id).where(schema.accounts.c.account_id == account_id).with_for_update())


def set_credit_limited(conn: Connection, account_id: str, credit_limited: bool, now_ms: int) -> AccountInfo:
    get_account(conn, account_id, now_ms)
    conn.execute(
        update(schema.accounts).where(schema.accounts.c.account_id == account_id).values(credit_limited=credit_limited)
    )
    return get_account(conn, account_id, now_ms)


# --- keys -----------------------------------------------------------------------------------------------------


def _key_from_row(row: Row) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,
        account_id=row.account_id,
        name=row.name,
        prefix=row.prefix,
        role=row.role,
        limits=KeyLimits(row.requests_per_minute, row.tokens_per_minute, row.max_concurrent),
        created_at=from_ms(row.created_at_ms),
        expires_at=from_ms(row.expires_at_ms),
        revoked_at=from_ms(row.revoked_at_ms),
    )


_KEY_COLUMNS = [c for c in schema.api_keys.c if c.name != "secret_hash"]


def insert_key(
    conn: Connection,
    new: NewSecret,
    name: str,
    account_id: str,
    role: str,
    expires_at_ms: int | None,
    limits: KeyLimits,
    now_ms: int,
) -> KeyInfo:
    get_account(conn, account_id, now_ms)
    conn.execute(
        insert(schema.api_keys).values(
            key_id=new.key_id, account_id=account_id, name=name, prefix=new.prefix, secret_hash=new.secret_hash,
            role=role, created_at_ms=now_ms, expires_at_ms=expires_at_ms, revoked_at_ms=None,
            requests_per_minute=limits.requests_per_minute, tokens_per_minute=limits.tokens_per_minute,
            max_concurrent=limits.max_concurrent,
        )
    )
    return get_key(conn, new.key_id)


def get_key(conn: Connection, key_id: str, account_id: str | None = None) -> KeyInfo:
    conditions = [schema.api_keys.c.key_id == key_id]
    if account_id is not None:
        conditions.append(schema.api_keys.c.account_id == account_id)
    row = conn.execute(select(*_KEY_COLUMNS).where(and_(*conditions))).first()
    if row is None:
        raise NotFound(f"API key {key_id!r} does not exist")
    return _key_from_row(row)


_KEY_BY_ID = select(schema.api_keys).where(schema.api_keys.c.key_id == bindparam("p_key"))


def find_key_by_secret(conn: Connection, key_id: str, secret: str) -> KeyInfo | None:
    row = conn.execute(_KEY_BY_ID, {"p_key": key_id}).first()
    if row is None or not secret_matches(secret, row.secret_hash):
        return None
    return _key_from_row(row)


def list_keys(conn: Connection, account_id: str | None) -> list[KeyInfo]:
    query = select(*_KEY_COLUMNS).order_by(schema.api_keys.c.created_at_ms, schema.api_keys.c.key_id)
    if account_id is not None:
        query = query.where(schema.api_keys.c.account_id == account_id)
    return [_key_from_row(row) for row in conn.execute(query).all()]


def revoke_key(conn: Connection, key_id: str, account_id: str | None, now_ms: int) -> KeyInfo:
    key = get_key(conn, key_id, account_id)
    if key.revoked_at is None:
        conn.execute(update(schema.api_keys).where(schema.api_keys.c.key_id == key_id).values(revoked_at_ms=now_ms))
    return get_key(conn, key_id)


# --- rate card ------------------------------------------------------------------------------------------------


def _price_from_row(row: Row) -> PriceCard:
    return PriceCard(
        model=row.model,
        input_nanos_per_token=int(row.input_nanos_per_token),
        cached_input_nanos_per_token=int(row.cached_input_nanos_per_token),
        output_nanos_per_token=int(row.output_nanos_per_token),
        web_search_nanos_per_call=int(row.web_search_nanos_per_call),
        effective_at_ms=int(row.effective_at_ms),
    )


_PRICE_FOR = (
    select(schema.prices)
    .where(
        or_(schema.prices.c.model == bindparam("p_model"), schema.prices.c.model == DEFAULT_MODEL),
        schema.prices.c.effective_at_ms <= bindparam("p_now"),
    )
    # The model's own row wins over "*"; among rows of one model the newest in force wins.
    .order_by(case((schema.prices.c.model == DEFAULT_MODEL, 1), else_=0), schema.prices.c.effective_at_ms.desc())
    .limit(1)
)


def price_for(conn: Connection, model: str, now_ms: int) -> PriceCard:
    """The card in force now for `model`, falling back to the "*" card."""
    row = conn.execute(_PRICE_FOR, {"p_model": model, "p_now": now_ms}).first()
    if row is None:
        raise NotFound("the rate card has no price for this model and no default '*' price")
    return _price_from_row(row)


def set_price(conn: Connection, card: PriceCard) -> PriceCard:
    validate_model(card.model)
    p = schema.prices
    exists = conn.execute(
        select(p.c.model).where(p.c.model == card.model, p.c.effective_at_ms == card.effective_at_ms)
    ).first()
    values = dict(
        input_nanos_per_token=card.input_nanos_per_token,
        cached_input_nanos_per_token=card.cached_input_nanos_per_token,
        output_nanos_per_token=card.output_nanos_per_token,
        web_search_nanos_per_call=card.web_search_nanos_per_call,
    )
    if exists:
        conn.execute(
            update(p).where(p.c.model == card.model, p.c.effective_at_ms == card.effective_at_ms).values(**values)
        )
    else:
        conn.execute(insert(p).values(model=card.model, effective_at_ms=card.effective_at_ms, **values))
    return card


def current_prices(conn: Connection, now_ms: int) -> list[PriceCard]:
    models = conn.execute(select(schema.prices.c.model).distinct().order_by(schema.prices.c.model)).scalars().all()
    cards = []
    for model in models:
        try:
            card = price_for(conn, model, now_ms)
        except NotFound:
            continue
        if card.model == model:  # a model whose only rows are in the future is not listed yet
            cards.append(card)
    return cards
