"""Wire-model bases shared by every API family: JSON serialisation and the `usage.cost` extension.

Owns `WireModel` (pydantic model -> the exact JSON we send, aliases applied), `CostedUsage` (a usage object whose
`cost` is left out until the ledger priced the request, rather than sent as null, since no official schema lists
it) and `usage_cost`, the one conversion of the ledger's decimal cost to the number sent on the wire. Imports
pydantic and serving.events. Invariant: every family sends the same `cost` for the same ledger record.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from qwen35.serving.events import Usage


def usage_cost(usage: Usage) -> float | None:
    """USD cost of a priced request (as OpenRouter sends it), None before the ledger priced it."""
    return None if usage.cost_usd is None else float(usage.cost_usd)


class WireModel(BaseModel):
    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class CostedUsage(WireModel):
    """A usage object with our `cost` extension, omitted while unknown."""

    cost: float | None = None

    @model_serializer(mode="wrap")
    def _omit_unpriced(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        wire: dict[str, Any] = handler(self)
        if wire.get("cost") is None:
            wire.pop("cost", None)
        return wire
