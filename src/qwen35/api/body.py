"""One request-body reader for every API family: bytes -> a JSON object, or a 400 that says what is wrong.

Owns JSON decoding (any content-type: clients that forget `application/json` are served alike on every API),
the object check, omitted-means-null (a top-level `null` is the field's default, as the OpenAPI specs mark them
nullable), and the lone-surrogate check (`"\\ud83d"` decodes to a str no tokenizer can encode). Imports
serving.errors only. Invariant: what leaves is a dict of valid Unicode strings, numbers, lists and objects; every
refusal is an `InvalidRequestError` the family renders in its own format.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request

from qwen35.api.limits import PARSED_KEY
from qwen35.serving.errors import InvalidRequestError

_SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf]")
INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library "
    "correctly. The API expects a JSON payload.)"
)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object with top-level nulls removed."""
    raw = await request.body()
    state = request.scope.get("state", {})
    if PARSED_KEY in state:  # api.limits parsed it (off the event loop when large, within the depth limit)
        data = state[PARSED_KEY]
    else:
        try:
            data = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidRequestError(INVALID_JSON, code="invalid_json") from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a JSON {type(data).__name__.replace('str', 'string')}"
        raise InvalidRequestError(f"The request body must be a JSON object, not {kind}.", code="invalid_type")
    # A surrogate arrives as a \\uD8xx-\\uDFxx escape or as its 3 UTF-8-style bytes ED A0..BF xx, which json.loads
    # decodes with surrogatepass: skip the walk when neither is in the body.
    suspect = b"\\ud" in raw.lower() or _SURROGATE_BYTES.search(raw) is not None
    path = _bad_unicode(data, "") if suspect else None
    if path is not None:
        raise InvalidRequestError(
            f"Invalid value for '{path}': the string contains a lone UTF-16 surrogate (not valid Unicode).",
            param=path,
            code="invalid_value",
        )
    return {key: value for key, value in data.items() if value is not None}


def _bad_unicode(node: Any, path: str) -> str | None:
    """Path of the first string (value or key) that is not valid Unicode, else None."""
    if isinstance(node, str):
        return None if _valid(node) else (path or "body")
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if not _valid(key):
                return path or "body"
            found = _bad_unicode(value, where)
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _bad_unicode(value, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _valid(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
