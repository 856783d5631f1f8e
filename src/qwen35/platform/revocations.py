"""Revocations as this process knows them: a set of revoked key ids, checked from memory on every engine step.

Owns `Revocations` (mixed into Platform): `is_key_revoked` (no query: called for every event of every open
stream), the instant update when this process revokes a key, and `poll_revocations`, run by a server's
maintenance thread every `POLL_S`, which picks up keys revoked by another process (`qwen35 keys revoke`, another
server): one `COUNT(*)` over the indexed `revoked_at_ms`, and the id list only when that count moved (revocation
is permanent, so the count moves exactly when a key is revoked; no clock comparison across hosts).
Imports nothing from qwen35 outside the platform.
Invariant: a key revoked in this process is seen at once; one revoked elsewhere within POLL_S (plus the query).
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine, func, select

from qwen35.platform import schema
from qwen35.platform.store import read_tx

POLL_S = 0.25
_k = schema.api_keys
_COUNT_REVOKED = select(func.count()).select_from(_k).where(_k.c.revoked_at_ms.is_not(None))
_REVOKED_IDS = select(_k.c.key_id).where(_k.c.revoked_at_ms.is_not(None))


class Revocations:
    _engine: Engine

    def __init__(self) -> None:
        self._revoked: frozenset[str] = frozenset()
        self._num_revoked_seen = -1
        self._revocation_lock = threading.Lock()

    def is_key_revoked(self, key_id: str) -> bool:
        """From memory: was this key revoked (as of this process's last poll or its own revocation)?"""
        return key_id in self._revoked

    def _revoked_here(self, key_id: str) -> None:
        with self._revocation_lock:
            self._revoked = self._revoked | {key_id}

    def poll_revocations(self) -> bool:
        """Refresh the set from the store; True when it changed."""
        with read_tx(self._engine) as conn:
            count = int(conn.execute(_COUNT_REVOKED).scalar_one())
            if count == self._num_revoked_seen:
                return False
            revoked = frozenset(str(key_id) for key_id in conn.execute(_REVOKED_IDS).scalars())
        with self._revocation_lock:
            changed = revoked != self._revoked
            self._revoked = revoked | self._revoked
            self._num_revoked_seen = count
        return changed
