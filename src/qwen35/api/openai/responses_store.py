"""Stored Responses: the Response body and its conversation, kept in the platform's document store.

Owns how a stored response is laid out as a platform document (kind `openai.response`): the final Response JSON,
the full input context it was generated from (the chain's earlier items + this request's input), and the owner key.
Imports nothing from qwen35 but talks to any object with the `platform.documents` interface
(`put / get / delete(kind, doc_id, owner_key_id)`), so it survives restarts with the platform database.
Invariants: every read and delete names the owner key, so a response is visible only to the key that created it
(another key gets "not found", never "forbidden"); a chain's history is self-contained in each document, so
deleting an earlier response never breaks a later one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import anyio

KIND = "openai.response"


class Documents(Protocol):
    def put(self, kind: str, doc_id: str, owner_key_id: str | None, body: Any, account_id: str | None = None) -> Any: ...

    def get(self, kind: str, doc_id: str, owner_key_id: str | None = None) -> Any: ...

    def delete(self, kind: str, doc_id: str, owner_key_id: str | None = None) -> bool: ...


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the Response as returned to the client
    input_items: list[dict[str, Any]]  # everything the model saw as input, oldest first (without instructions)

    def history(self) -> list[dict[str, Any]]:
        """What a follow-up with `previous_response_id` continues from: the input, then this response's output."""
        return [*self.input_items, *self.response.get("output", [])]


class ResponseStore:
    """Async facade over the (synchronous, database-backed) document store."""

    def __init__(self, documents: Documents) -> None:
        self._documents = documents

    @staticmethod
    def _owner(owner_key_id: str) -> str:
        if not owner_key_id:
            raise ValueError("stored responses need an owner key")  # None would mean "any owner" to the store
        return owner_key_id

    async def save(
        self,
        owner_key_id: str,
        response: dict[str, Any],
        input_items: list[dict[str, Any]],
        account_id: str | None = None,
    ) -> None:
        body = {"response": response, "input_items": input_items}
        owner = self._owner(owner_key_id)
        await anyio.to_thread.run_sync(
            lambda: self._documents.put(KIND, response["id"], owner, body, account_id=account_id)
        )

    async def load(self, owner_key_id: str, response_id: str) -> StoredResponse | None:
        owner = self._owner(owner_key_id)
        if not _plausible_id(response_id):
            return None
        document = await anyio.to_thread.run_sync(lambda: self._documents.get(KIND, response_id, owner))
        if document is None:
            return None
        body = document.body
        return StoredResponse(response=body["response"], input_items=list(body.get("input_items", [])))

    async def delete(self, owner_key_id: str, response_id: str) -> bool:
        owner = self._owner(owner_key_id)
        if not _plausible_id(response_id):
            return False
        return bool(await anyio.to_thread.run_sync(lambda: self._documents.delete(KIND, response_id, owner)))


def _plausible_id(response_id: str) -> bool:
    # the store rejects over-long ids with an error; a made-up id is simply "not found" to the caller
    return isinstance(response_id, str) and 0 < len(response_id) <= 128
