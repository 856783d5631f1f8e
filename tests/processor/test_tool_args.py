"""Parameter values are typed from the tool's JSON schema, with safe fallbacks."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from qwen35.processor.tool_args import convert_value, tool_param_types


@pytest.mark.parametrize(
    "text, types, expected",
    [
        ("42", ("integer",), 42),
        (" -7 ", ("integer",), -7),
        ("5.0", ("integer",), 5),
        ("3.25", ("number",), 3.25),
        ("10", ("number",), 10),
        ("1e3", ("number",), 1000.0),
        ("true", ("boolean",), True),
        ("False", ("boolean",), False),  # the template renders Python booleans with `| string`
        ('{"a": [1, 2]}', ("object",), {"a": [1, 2]}),
        ("{'a': True, 'b': None}", ("object",), {"a": True, "b": None}),
        ("[1, 2, 3]", ("array",), [1, 2, 3]),
        ("null", ("string", "null"), None),
        ("text", ("string", "null"), "text"),
        ("007", ("string",), "007"),
        ("12", ("integer", "string"), 12),
        ("12", (), 12),
        ('{"k": 1}', (), {"k": 1}),
        ("plain words", (), "plain words"),
        ("not a number", ("integer",), "not a number"),
        ("[1, 2]", ("integer",), [1, 2]),  # wrong type but valid JSON: JSON wins over the raw string
        ("nan", ("number",), "nan"),
        ("NaN", (), "NaN"),
        ("Infinity", ("number",), "Infinity"),
        ("{broken", ("object",), "{broken"),
        ("{1, 2}", ("object",), "{1, 2}"),  # a Python set is not JSON
    ],
)
def test_convert_value(text: str, types: tuple[str, ...], expected: Any) -> None:
    value = convert_value(text, types)
    assert value == expected and type(value) is type(expected)
    json.loads(json.dumps(value))  # always valid JSON


def test_converted_numbers_are_finite() -> None:
    for text in ("1e999", "-1e999", "inf"):
        value = convert_value(text, ("number",))
        assert not (isinstance(value, float) and not math.isfinite(value))


def test_tool_param_types_reads_every_tool_shape() -> None:
    tools = [
        {"type": "function", "function": {"name": "a", "parameters": {"properties": {"x": {"type": "integer"}}}}},
        {"name": "b", "input_schema": {"properties": {"y": {"anyOf": [{"type": "number"}, {"type": "null"}]}}}},
        {"name": "c", "parameters": {"properties": {"z": {"enum": ["p", "q"]}, "w": {"properties": {}}}}},
        {"name": "d"},
        "not a tool",
        {"function": {"parameters": {}}},
    ]
    assert tool_param_types(tools) == {  # type: ignore[arg-type]
        "a": {"x": ("integer",)},
        "b": {"y": ("number", "null")},
        "c": {"z": ("trimmed_string",), "w": ("object",)},  # a closed set: padding is not part of the value
        "d": {},
    }


def test_shaped_strings_are_trimmed() -> None:
    # the structured-output grammar pads enum / pattern / format values with whitespace as it pads numbers
    types = tool_param_types([{"name": "f", "parameters": {"properties": {
        "e": {"type": "string", "enum": ["c", "f"]}, "p": {"type": "string", "pattern": "^a+$"},
        "free": {"type": "string"}}}}])["f"]
    assert types == {"e": ("trimmed_string",), "p": ("trimmed_string",), "free": ("string",)}
    assert convert_value(" \tc\n", types["e"]) == "c"
    assert convert_value("  keep me ", types["free"]) == "  keep me "
