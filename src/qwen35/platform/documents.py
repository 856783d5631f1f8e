"""A small generic store of JSON documents (stored responses, conversations...) in the platform database.

Owns: the `documents` table. Other packages store their objects here as (kind, doc_id) -> JSON, scoped to the
API key that created them, without touching the platform schema. Imports nothing from qwen35 outside the platform.
Invariant: a read/update/delete that names an owner only ever sees that owner's documents (another owner's
document reads as missing, never as forbidden, so ids cannot be probed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from qwen35.platform import schema
from qwen35.platform.errors import InvalidInput
from qwen35.platform.store import read_tx, write_tx

_KIND_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_ID_MAX = 128


@dataclass(frozen=True)
class StoredDocument:
    kind: str
    doc_id: str
    owner_key_id: str | None
    account_id: str | None
    body: Any  # the decoded JSON value
    created_at_ms: int
    updated_at_ms: int


def _check(kind: str, doc_id: str) -> None:
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise InvalidInput(f"document kind {kind!r} is invalid (lowercase letters, digits, '_', '.', '-')")
    if not isinstance(doc_id, str) or not 0 < len(doc_id) <= _ID_MAX:
        raise InvalidInput(f"document id must be 1-{_ID_MAX} characters")


def _encode(body: Any) -> str:
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"document body is not JSON-serialisable: {exc}") from None


def _from_row(row: Any) -> StoredDocument:
    return StoredDocument(
        kind=row.kind, doc_id=row.doc_id, owner_key_id=row.owner_key_id, account_id=row.account_id,
        body=json.loads(row.body), created_at_ms=int(row.created_at_ms), updated_at_ms=int(row.updated_at_ms),
    )


class DocumentStore:
    """`platform.documents`: put/get/delete/list JSON documents by (kind, doc_id)."""

    def __init__(self, engine: Engine, now_ms: Callable[[], int]) -> None:
        self._engine = engine
        self._now_ms = now_ms

    def put(
        self, kind: str, doc_id: str, owner_key_id: str | None, body: Any, account_id: str | None = None
    ) -> StoredDocument:
        """Insert or replace. Replacing another owner's document is refused (InvalidInput)."""
        _check(kind, doc_id)
        text = _encode(body)
        now = self._now_ms()
        d = schema.documents
        with write_tx(self._engine) as conn:
            row = conn.execute(select(d).where(d.c.kind == kind, d.c.doc_id == doc_id)).first()
            if row is None:
                conn.execute(
                    insert(d).values(
                        kind=kind, doc_id=doc_id, owner_key_id=owner_key_id, account_id=account_id, body=text,
                        created_at_ms=now, updated_at_ms=now,
                    )
                )
            elif row.owner_key_id != owner_key_id:
                raise InvalidInput(f"{kind} {doc_id!r} already exists")
            else:
                conn.execute(
                    update(d).where(d.c.kind == kind, d.c.doc_id == doc_id).values(body=text, updated_at_ms=now)
                )
            return _from_row(conn.execute(select(d).where(d.c.kind == kind, d.c.doc_id == doc_id)).one())

    def get(self, kind: str, doc_id: str, owner_key_id: str | None = None) -> StoredDocument | None:
        """The document, or None when absent or (with `owner_key_id`) owned by another key."""
        _check(kind, doc_id)
        d = schema.documents
        query = select(d).where(d.c.kind == kind, d.c.doc_id == doc_id)
        if owner_key_id is not None:
            query = query.where(d.c.owner_key_id == owner_key_id)
        with read_tx(self._engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else _from_row(row)

    def delete(self, kind: str, doc_id: str, owner_key_id: str | None = None) -> bool:
        """True when a document was deleted."""
        _check(kind, doc_id)
        d = schema.documents
        stmt = delete(d).where(d.c.kind == kind, d.c.doc_id == doc_id)
        if owner_key_id is not None:
            stmt = stmt.where(d.c.owner_key_id == owner_key_id)
        with write_tx(self._engine) as conn:
            return conn.execute(stmt).rowcount > 0

    def list(self, kind: str, owner_key_id: str | None, limit: int = 100) -> list[StoredDocument]:
        """Newest first."""
        _check(kind, "x")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be an integer in 1..10000")
        d = schema.documents
        query = select(d).where(d.c.kind == kind).order_by(d.c.created_at_ms.desc(), d.c.doc_id.desc()).limit(limit)
        if owner_key_id is not None:
            query = query.where(d.c.owner_key_id == owner_key_id)
        with read_tx(self._engine) as conn:
            return [_from_row(row) for row in conn.execute(query).all()]
