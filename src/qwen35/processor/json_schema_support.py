"""Which JSON Schema features structured output enforces, checked before a grammar is compiled.

Owns the keyword table: every keyword is either enforced by the grammar (xgrammar 0.2.8, each one measured by
accepting a violating instance), an annotation that constrains nothing (title, description, ...), or refused.
`oneOf` is enforced as `anyOf` (an
instance matching two branches is not refused; discriminated unions, pydantic's, never do). xgrammar silently
ignores several keywords (not, if/then/else, uniqueItems, dependentRequired, allOf with several
schemas, non-integer multipleOf or one combined with bounds, most unknown formats); a silent drop would return JSON that breaks the caller's
schema, so those are refused here with the feature and its location named. Pure Python: no torch, no xgrammar.
Invariant: `check_schema` either returns or raises `SchemaError` naming one keyword and its JSON pointer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Enforced by the grammar (some only with the value constraints checked below).
ENFORCED = frozenset({
    "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions",
    "properties", "required", "additionalProperties", "patternProperties", "propertyNames",
    "minProperties", "maxProperties", "unevaluatedProperties",
    "items", "prefixItems", "minItems", "maxItems", "contains", "minContains", "unevaluatedItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format", "nullable",
})  # fmt: skip
# Constrain nothing (JSON Schema annotations, OpenAPI/pydantic extras).
ANNOTATIONS = frozenset({
    "$schema", "$id", "$anchor", "$comment", "$vocabulary", "title", "description", "default", "examples",
    "deprecated", "readOnly", "writeOnly", "contentEncoding", "contentMediaType", "contentSchema",
    "discriminator", "example", "externalDocs", "xml",
})  # fmt: skip
# Formats the grammar enforces (others would be dropped silently).
FORMATS = frozenset({
    "date", "time", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "uuid", "uri",
    "uri-reference", "uri-template", "json-pointer", "relative-json-pointer",
})  # fmt: skip
SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
SUBSCHEMAS = ("additionalProperties", "propertyNames", "unevaluatedProperties", "items", "contains",
               "unevaluatedItems")
_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})


class SchemaError(ValueError):
    """A schema structured output cannot enforce; `feature` names the keyword, `pointer` where it is."""

    def __init__(self, message: str, feature: str, pointer: str) -> None:
        super().__init__(message)
        self.message = message
        self.feature = feature
        self.pointer = pointer


def check_schema(schema: object) -> None:
    """Raise SchemaError for the first feature the grammar would not enforce (a boolean schema is fine)."""
    _check(schema, "")


def _check(node: object, pointer: str) -> None:
    if isinstance(node, bool):
        return
    if not isinstance(node, Mapping):
        raise SchemaError(f"a schema must be an object or a boolean, found {type(node).__name__} at "
                          f"'{pointer or '/'}'", "schema", pointer or "/")
    for key, value in node.items():
        at = f"{pointer}/{key}"
        if key in ANNOTATIONS or (isinstance(key, str) and key.startswith("x-")):
            continue
        if key not in ENFORCED:
            raise SchemaError(f"JSON schema keyword '{key}' (at '{at}') is not supported by structured output",
                              str(key), at)
        _check_value(str(key), value, at, node)
    for key in SUBSCHEMA_MAPS:
        children = node.get(key)
        if isinstance(children, Mapping):
            for name, child in children.items():
                _check(child, f"{pointer}/{key}/{name}")
    for key in SUBSCHEMA_LISTS:
        children = node.get(key)
        if isinstance(children, list):
            for i, child in enumerate(children):
                _check(child, f"{pointer}/{key}/{i}")
    for key in SUBSCHEMAS:
        if key in node:
            child = node[key]
            for i, item in enumerate(child if isinstance(child, list) else [child]):
                _check(item, f"{pointer}/{key}" + (f"/{i}" if isinstance(child, list) else ""))


def _check_value(key: str, value: Any, at: str, node: Mapping[str, Any]) -> None:
    def refuse(why: str) -> None:
        raise SchemaError(f"JSON schema keyword '{key}' (at '{at}') {why}", key, at)

    if key == "type":
        types = value if isinstance(value, list) else [value]
        for t in types:
            if t not in _TYPES:
                refuse(f"has an unknown type {t!r}")
    elif key == "format":
        if value not in FORMATS:
            refuse(f"format {value!r} is not supported by structured output (supported: {', '.join(sorted(FORMATS))})")
    elif key == "$ref":
        if not isinstance(value, str) or not (value == "#" or value.startswith("#/")):
            refuse("must be a local reference ('#/$defs/...'); remote references are not supported")
    elif key == "allOf":
        if isinstance(value, list) and len(value) > 1:
            refuse("with more than one schema is not supported by structured output; merge them into one")
    elif key == "multipleOf":
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            refuse("must be a positive integer for structured output (fractional steps are not enforced)")
        if any(bound in node for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            refuse("together with minimum / maximum is not supported by structured output (the step would be "
                   "dropped)")
    elif key == "minContains":
        if "contains" not in node:
            refuse("needs 'contains'")
    elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            refuse("must be a number")
