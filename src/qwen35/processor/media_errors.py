"""The one error type of media input (decoding, limits, fetching): every API maps it to a 400 naming the part.

Imports nothing. Invariant: the message is safe to show the client (no server paths, no secrets).
"""

from __future__ import annotations


class MediaError(ValueError):
    """Media the server refuses or cannot read; `code` is a stable machine-readable reason."""

    def __init__(self, message: str, code: str = "invalid_media") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
