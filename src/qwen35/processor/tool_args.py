"""Tool-call argument typing: the text of one `<parameter=K>` value -> a JSON value, guided by the tool's schema.

Owns reading tool definitions (OpenAI `{"type": "function", "function": {...}}`, flat `{"name", "parameters"}`,
Anthropic `{"name", "input_schema"}`) into per-parameter JSON types, and converting raw parameter text to a
value. Must not import torch, engine, serving or api. Key invariant: conversion never raises; a value that does
not fit its declared type falls back to JSON, then to the raw string, and the result always serialises to
valid JSON (no NaN or Infinity).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

JSON_TYPES = ("null", "boolean", "integer", "number", "object", "array", "string")
# A string with a closed or shaped set of values (enum, const, pattern, format, length): its value is the text
# without surrounding whitespace (the structured-output grammar allows padding around it, as around numbers).
TRIMMED_STRING = "trimmed_string"
_STRING_SHAPES = ("enum", "const", "pattern", "format", "minLength", "maxLength")
_INT_RE = re.compile(r"[+-]?\d+")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a float")
    return value


def loads_strict(text: str) -> Any:
    """json.loads that refuses NaN, Infinity and overflowing numbers (they would make invalid arguments JSON)."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def _schema_types(schema: object) -> tuple[str, ...]:
    """The JSON types a parameter schema allows, most specific first; () when unknown."""
    types = _json_types(schema)
    if types == ("string",) and isinstance(schema, Mapping) and any(k in schema for k in _STRING_SHAPES):
        return (TRIMMED_STRING,)
    return types


def _json_types(schema: object) -> tuple[str, ...]:
    if not isinstance(schema, Mapping):
        return ()
    found: list[str] = []
    declared = schema.get("type")
    if isinstance(declared, str):
        found.append(declared)
    elif isinstance(declared, list):
        found.extend(t for t in declared if isinstance(t, str))
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list):
            for option in options:
                found.extend(_json_types(option))
    if not found and isinstance(schema.get("enum"), list):
        found.extend(_type_of(v) for v in schema["enum"])
    if not found and "const" in schema:
        found.append(_type_of(schema["const"]))
    if not found and isinstance(schema.get("properties"), Mapping):
        found.append("object")
    if not found and "items" in schema:
        found.append("array")
    return tuple(dict.fromkeys(t for t in found if t in JSON_TYPES))


def _type_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def tool_param_types(tools: Sequence[Mapping[str, Any]] | None) -> dict[str, dict[str, tuple[str, ...]]]:
    """{tool name: {parameter name: allowed JSON types}} for every well-formed tool in `tools`."""
    table: dict[str, dict[str, tuple[str, ...]]] = {}
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        nested = tool.get("function")
        function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else tool
        name = function.get("name")
        if not isinstance(name, str):
            continue
        params = function.get("parameters")
        if params is None:
            params = function.get("input_schema")
        properties = params.get("properties") if isinstance(params, Mapping) else None
        table[name] = (
            {str(k): _schema_types(v) for k, v in properties.items()} if isinstance(properties, Mapping) else {}
        )
    return table


def _as_int(text: str) -> int | None:
    s = text.strip()
    if _INT_RE.fullmatch(s):
        return int(s)
    number = _as_number(s)
    if isinstance(number, float) and number.is_integer():
        return int(number)
    return None


def _as_number(text: str) -> int | float | None:
    s = text.strip()
    if _INT_RE.fullmatch(s):
        return int(s)
    if not s or "_" in s:
        return None
    try:
        value = float(s)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _as_container(text: str, kind: type) -> Any:
    s = text.strip()
    try:
        value = loads_strict(s)
    except ValueError:
        try:  # models sometimes write Python literals (single quotes, True/None)
            value = ast.literal_eval(s)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            return None
        try:
            loads_strict(json.dumps(value))
        except (TypeError, ValueError):
            return None
    return value if isinstance(value, kind) else None


_MISSING = object()


def _convert_as(text: str, json_type: str) -> Any:
    lowered = text.strip().lower()
    if json_type == "null":
        return None if lowered in ("null", "none") else _MISSING
    if json_type == "boolean":
        return {"true": True, "false": False}.get(lowered, _MISSING)
    if json_type == "integer":
        integer = _as_int(text)
        return _MISSING if integer is None else integer
    if json_type == "number":
        number = _as_number(text)
        return _MISSING if number is None else number
    if json_type in ("object", "array"):
        container = _as_container(text, dict if json_type == "object" else list)
        return _MISSING if container is None else container
    if json_type == TRIMMED_STRING:
        return text.strip()
    return text  # string


def convert_value(text: str, types: Sequence[str]) -> Any:
    """The typed value of one parameter's text. Non-string types are tried before "string"."""
    for json_type in sorted(types, key=lambda t: t in ("string", TRIMMED_STRING)):
        value = _convert_as(text, json_type)
        if value is not _MISSING:
            return value
    try:
        return loads_strict(text.strip())
    except ValueError:
        return text
