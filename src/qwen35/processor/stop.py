"""Stop strings over a text stream.

Owns matching user stop strings across delta boundaries. Must not import torch, engine, serving or api.
Key invariant: the text emitted before a match is exactly the stream's text up to the first occurrence of any
stop string (the earliest start wins; the stop string itself and everything after it are dropped), and only a
suffix that could still begin a stop string is ever held back.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feed text deltas; get back what is safe to emit and, once, the stop string that matched."""

    def __init__(self, stops: Sequence[str] | None) -> None:
        if isinstance(stops, str):
            stops = [stops]
        cleaned = [s for s in (stops or ()) if isinstance(s, str) and s]
        self.stops: tuple[str, ...] = tuple(dict.fromkeys(cleaned))
        self._max_len = max((len(s) for s in self.stops), default=0)
        self._held = ""
        self.matched: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.stops)

    def feed(self, text: str) -> tuple[str, str | None]:
        """(text safe to emit now, the stop string if one matched). After a match every feed returns ("", stop)."""
        if self.matched is not None:
            return "", self.matched
        if not self.stops:
            return text, None
        buf = self._held + text
        # Earliest start wins; among stops starting there, the longest. A match is final only when no stop could
        # still complete at an earlier start, so the outcome never depends on how the text was chunked.
        best_at, best_stop = -1, None
        for stop in self.stops:
            at = buf.find(stop)
            if at != -1 and (best_at == -1 or at < best_at or (at == best_at and len(stop) > len(best_stop or ""))):
                best_at, best_stop = at, stop
        partial_at = self._partial_start(buf)
        if best_stop is not None and (partial_at == -1 or partial_at > best_at):
            self._held = ""
            self.matched = best_stop
            return buf[:best_at], best_stop
        if partial_at == -1:
            self._held = ""
            return buf, None
        self._held = buf[partial_at:]
        return buf[:partial_at], None

    def _partial_start(self, buf: str) -> int:
        """Start of the longest suffix of `buf` that is a proper prefix of some stop string, or -1."""
        first = max(0, len(buf) - self._max_len + 1)
        for start in range(first, len(buf)):
            tail = buf[start:]
            if any(len(stop) > len(tail) and stop.startswith(tail) for stop in self.stops):
                return start
        return -1

    def flush(self) -> str:
        """End of stream: release the held-back text. A stop inside it (held only because a longer stop could
        have started earlier) still matches: check `.matched` afterwards."""
        if self.matched is not None:
            return ""
        held, self._held = self._held, ""
        best_at = -1
        for stop in self.stops:
            at = held.find(stop)
            if at != -1 and (best_at == -1 or at < best_at):
                best_at, self.matched = at, stop
            elif at != -1 and at == best_at and len(stop) > len(self.matched or ""):
                self.matched = stop
        return held if best_at == -1 else held[:best_at]
