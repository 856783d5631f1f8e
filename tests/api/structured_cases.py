"""Shared structured-output test values: models and schemas a noise model can only satisfy under a grammar, and
whose outputs terminate (closed sets, no free strings)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Badge(BaseModel):
    vip: bool
    color: Literal["red", "blue"]


class SimplePet(BaseModel):
    """What anthropic's messages.parse sends intact (its transform_schema moves numeric bounds and maxItems into
    the description, which no grammar can enforce)."""

    kind: Literal["cat", "dog", "bird"]
    ok: bool
    legs: Literal[2, 4]
    badge: Badge


WEATHER = {
    "type": "object",
    "properties": {"unit": {"type": "string", "enum": ["c", "f"]}, "days": {"type": "integer", "minimum": 1,
                                                                             "maximum": 7}},
    "required": ["unit", "days"],
    "additionalProperties": False,
}
