"""Operator CLI for the platform: `qwen35 accounts|credits|keys|prices|usage ...`.

Owns: argument parsing and printing for these subcommands; `add_platform_commands(subparsers)` is called by the
composition root (qwen35/cli.py). Each subcommand sets `func(args) -> int` (exit code). Imports nothing from
qwen35 outside the platform.
Invariants: `keys create` prints the secret exactly once, alone on the last line of stdout (scripts take
`tail -n1`); errors go to stderr with exit code 1 (2 for bad arguments), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from qwen35.platform.errors import InvalidInput, PlatformError
from qwen35.platform.keys import KeyInfo, KeyLimits
from qwen35.platform.money import DEFAULT_MODEL, PriceCard, nanos_to_usd
from qwen35.platform.platform import Platform


def _store_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data-dir", type=Path, default=None, help="store directory (default $QWEN35_HOME or ~/.qwen35)"
    )
    parent.add_argument(
        "--database-url", default=None,
        help="database URL, e.g. postgresql://user@host/db (default $QWEN35_DATABASE_URL, else SQLite in --data-dir)",
    )
    return parent


def _run(body: Callable[[Platform, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def func(args: argparse.Namespace) -> int:
        try:
            with Platform.open(data_dir=args.data_dir, database_url=args.database_url) as platform:
                return body(platform, args)
        except InvalidInput as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except PlatformError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return func


def _usd(nanos: int) -> str:
    return f"{nanos_to_usd(nanos):f}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _key_row(key: KeyInfo) -> dict[str, Any]:
    return {
        "key_id": key.key_id, "name": key.name, "prefix": key.prefix, "account": key.account_id, "role": key.role,
        "created_at": _when(key.created_at), "expires_at": _when(key.expires_at),
        "revoked_at": _when(key.revoked_at), "requests_per_minute": key.limits.requests_per_minute,
        "tokens_per_minute": key.limits.tokens_per_minute, "max_concurrent": key.limits.max_concurrent,
    }


def _print_table(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c] if r[c] is not None else "-")) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[c] if row[c] is not None else "-").ljust(widths[c]) for c in columns).rstrip())


# --- accounts / credits ---------------------------------------------------------------------------------------


def _accounts_create(platform: Platform, args: argparse.Namespace) -> int:
    account = platform.create_account(args.name, credit_limited=not args.unlimited)
    limited = "credit-limited" if account.credit_limited else "not credit-limited"
    print(f"created account {account.account_id} ({limited}, balance ${_usd(account.balance_nanos)})")
    return 0


def _accounts_list(platform: Platform, args: argparse.Namespace) -> int:
    rows = [
        {
            "account": a.account_id, "balance_usd": _usd(a.balance_nanos), "held_usd": _usd(a.held_nanos),
            "credit_limited": a.credit_limited, "default": a.is_default,
        }
        for a in platform.list_accounts()
    ]
    _print_table(rows, args.json)
    return 0


def _credits_add(platform: Platform, args: argparse.Namespace) -> int:
    account = platform.add_credits(args.account, args.amount_usd, note=args.note)
    print(f"account {account.account_id}: balance ${_usd(account.balance_nanos)}")
    return 0


# --- keys -----------------------------------------------------------------------------------------------------


def _expiry(args: argparse.Namespace) -> datetime | None:
    if args.expires_in_days is not None:
        if args.expires_in_days <= 0:
            raise InvalidInput("--expires-in-days must be positive")
        return datetime.now(UTC) + timedelta(days=args.expires_in_days)
    if args.expires_at:
        try:
            moment = datetime.fromisoformat(args.expires_at)
        except ValueError:
            raise InvalidInput(f"--expires-at must be an ISO 8601 date/time, got {args.expires_at!r}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _keys_create(platform: Platform, args: argparse.Namespace) -> int:
    limits = KeyLimits(args.rpm, args.tpm, args.concurrency)
    info, secret = platform.create_key(
        args.name, account=args.account, admin=args.admin, expires_at=_expiry(args), limits=limits
    )
    print(f"created key {info.key_id} ({info.name}, account {info.account_id}, role {info.role})", file=sys.stdout)
    print("the secret below is shown only once; store it now:")
    print(secret)
    return 0


def _keys_list(platform: Platform, args: argparse.Namespace) -> int:
    _print_table([_key_row(k) for k in platform.list_keys(args.account)], args.json)
    return 0


def _keys_revoke(platform: Platform, args: argparse.Namespace) -> int:
    info = platform.revoke_key(args.key_id)
    print(f"revoked key {info.key_id} ({info.name})")
    return 0


# --- prices and usage -----------------------------------------------------------------------------------------


def _price_row(card: PriceCard) -> dict[str, Any]:
    usd = card.as_usd()
    return {"model": card.model, **{k: f"{v:f}" for k, v in usd.items()}}


def _prices_list(platform: Platform, args: argparse.Namespace) -> int:
    _print_table([_price_row(c) for c in platform.list_prices()], args.json)
    return 0


def _prices_set(platform: Platform, args: argparse.Namespace) -> int:
    current = platform.price_for(args.model).as_usd()

    def pick(given: str | None, name: str) -> Decimal | str:
        return given if given is not None else current[name]

    card = platform.set_price(
        args.model,
        input_per_million=pick(args.input, "input_per_million"),
        cached_input_per_million=pick(args.cached_input, "cached_input_per_million"),
        output_per_million=pick(args.output, "output_per_million"),
        web_search_per_call=pick(args.web_search, "web_search_per_call"),
    )
    print(json.dumps(_price_row(card)))
    return 0


def _prices_load(platform: Platform, args: argparse.Namespace) -> int:
    """File: JSON list of {"model", "input_per_million", "cached_input_per_million", "output_per_million",
    "web_search_per_call"} with decimal strings (numbers are read as decimal text, never as float)."""
    try:
        entries = json.loads(Path(args.file).read_text(), parse_float=Decimal, parse_int=Decimal)
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"cannot read price file {args.file}: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidInput("price file must be a JSON list of objects")
    for entry in entries:
        try:
            card = platform.set_price(
                str(entry.get("model", DEFAULT_MODEL)),
                input_per_million=str(entry["input_per_million"]),
                cached_input_per_million=str(entry["cached_input_per_million"]),
                output_per_million=str(entry["output_per_million"]),
                web_search_per_call=str(entry["web_search_per_call"]),
            )
        except KeyError as exc:
            raise InvalidInput(f"price entry {entry!r} lacks {exc}") from None
        print(json.dumps(_price_row(card)))
    return 0


def _usage_list(platform: Platform, args: argparse.Namespace) -> int:
    rows = [
        {
            "request_id": u.request_id, "time": _when(u.created_at), "account": u.account_id, "key_id": u.key_id,
            "endpoint": u.endpoint, "model": u.model, "input": u.input_tokens, "cached": u.cached_input_tokens,
            "output": u.output_tokens, "reasoning": u.reasoning_tokens, "searches": u.web_search_calls,
            "cost_usd": f"{u.cost:f}", "latency_ms": u.latency_ms, "status": u.status,
        }
        for u in platform.list_usage(account=args.account, limit=args.limit)
    ]
    _print_table(rows, args.json)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_platform_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    store = _store_options()

    accounts = subparsers.add_parser("accounts", help="manage accounts").add_subparsers(
        dest="accounts_cmd", required=True
    )
    p = accounts.add_parser("create", parents=[store], help="create an account (credit-limited unless --unlimited)")
    p.add_argument("name")
    p.add_argument("--unlimited", action="store_true", help="meter and charge, but never refuse for credit")
    p.set_defaults(func=_run(_accounts_create))
    p = accounts.add_parser("list", parents=[store], help="list accounts with balances")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run(_accounts_list))

    credits = subparsers.add_parser("credits", help="add prepaid credits").add_subparsers(
        dest="credits_cmd", required=True
    )
    p = credits.add_parser("add", parents=[store], help="add AMOUNT_USD (negative to remove) to ACCOUNT")
    p.add_argument("account")
    p.add_argument("amount_usd", help="decimal USD, e.g. 10 or 0.50")
    p.add_argument("--note", default=None)
    p.set_defaults(func=_run(_credits_add))

    keys = subparsers.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_cmd", required=True)
    p = keys.add_parser("create", parents=[store], help="create a key; the secret is the last line of stdout")
    p.add_argument("--name", required=True)
    p.add_argument("--account", default=None, help="owning account (default: the operator's default account)")
    p.add_argument("--admin", action="store_true", help="admin role: sees every account in the dashboard")
    p.add_argument("--expires-in-days", type=float, default=None)
    p.add_argument("--expires-at", default=None, help="ISO 8601 (UTC if no offset)")
    p.add_argument("--rpm", type=_positive_int, default=None, help="requests per minute")
    p.add_argument("--tpm", type=_positive_int, default=None, help="tokens (input + max output) per minute")
    p.add_argument("--concurrency", type=_positive_int, default=None, help="concurrent requests")
    p.set_defaults(func=_run(_keys_create))
    p = keys.add_parser("list", parents=[store], help="list keys (never their secrets)")
    p.add_argument("--account", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run(_keys_list))
    p = keys.add_parser("revoke", parents=[store], help="revoke a key at once")
    p.add_argument("key_id")
    p.set_defaults(func=_run(_keys_revoke))

    prices = subparsers.add_parser("prices", help="the rate card").add_subparsers(dest="prices_cmd", required=True)
    p = prices.add_parser("list", parents=[store], help="prices in force now (USD)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run(_prices_list))
    p = prices.add_parser("set", parents=[store], help="set a model's prices (unset ones keep their value)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model id, or '*' for every model without its own row")
    p.add_argument("--input", default=None, help="USD per million input tokens")
    p.add_argument("--cached-input", default=None, help="USD per million cached input tokens")
    p.add_argument("--output", default=None, help="USD per million output tokens (reasoning included)")
    p.add_argument("--web-search", default=None, help="USD per web-search call")
    p.set_defaults(func=_run(_prices_set))
    p = prices.add_parser("load", parents=[store], help="set prices from a JSON file")
    p.add_argument("file")
    p.set_defaults(func=_run(_prices_load))

    usage = subparsers.add_parser("usage", help="the usage ledger").add_subparsers(dest="usage_cmd", required=True)
    p = usage.add_parser("list", parents=[store], help="latest usage records")
    p.add_argument("--account", default=None)
    p.add_argument("--limit", type=_positive_int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run(_usage_list))
