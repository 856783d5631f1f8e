"""Server logging: plain text or JSON lines (opt-in), every record with its request id, never a secret.

Owns `REQUEST_ID` (a context variable the request-id middleware sets, so every record logged while serving a request
carries its `req_...` id), `SecretFilter` (API-key-shaped and Bearer strings are masked in every record, whatever
logged them), `JsonFormatter` and `configure_logging` (root handler for qwen35, uvicorn's error and access logs).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from contextvars import ContextVar
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("qwen35_request_id", default=None)
_SECRET = re.compile(r"(sk-q35-[0-9a-f]{0,12})[A-Za-z0-9_-]+|(Bearer\s+)\S+", re.IGNORECASE)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def _mask(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2) or "") + "***", text)


class SecretFilter(logging.Filter):
    """Masks secrets in the message and its arguments; adds `request_id` to the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        message = record.getMessage()
        masked = _mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class TextFormatter(logging.Formatter):
    """The plain format, with secrets masked in tracebacks too."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return _mask(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, exception text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        if record.exc_info:
            entry["exc"] = _mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    """The root handler (stderr) for every logger, uvicorn's included (they propagate to it)."""
    handler = logging.StreamHandler()
    handler.addFilter(SecretFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
