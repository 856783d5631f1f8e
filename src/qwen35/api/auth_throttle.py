"""Failed-authentication throttling per client address, in memory and bounded.

Owns `FailedAuthThrottle`: the failed attempts (missing, malformed, unknown, revoked or expired key) of each client
address in a sliding window; beyond `max_failures` in `window_s`, further failures are answered with a 429 and a
`retry-after` until the oldest failure leaves the window. A request with a valid key is never refused by it (a user
behind a NAT shared with a guesser keeps working), and a success does not count. Memory: at most `max_addresses`
addresses (least recently failed evicted first), each with at most `max_failures + 1` timestamps. Imports nothing
from qwen35 (the dashboard router uses it too).
Invariant: `max_failures <= 0` turns the throttle off.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

DEFAULT_MAX_FAILURES = 20
DEFAULT_WINDOW_S = 60.0
DEFAULT_MAX_ADDRESSES = 10_000


class FailedAuthThrottle:
    def __init__(
        self,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window_s: float = DEFAULT_WINDOW_S,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max(1, max_addresses)
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_failures > 0 and self.window_s > 0

    def failed(self, address: str) -> float | None:
        """Count a failed attempt; the seconds to wait when this address is now over the limit, else None."""
        if not self.enabled:
            return None
        now = self._clock()
        with self._lock:
            times = self._failures.pop(address, None)
            if times is None:
                times = deque(maxlen=self.max_failures + 1)
            self._failures[address] = times  # most recently failed last
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
            while times and times[0] <= now - self.window_s:
                times.popleft()
            times.append(now)
            if len(times) <= self.max_failures:
                return None
            return max(1.0, times[0] + self.window_s - now)

    def num_addresses(self) -> int:
        with self._lock:
            return len(self._failures)


def throttle_of(state: Any) -> FailedAuthThrottle:
    """The app's throttle (`app.state.auth_throttle`), made on first use from `app.state.settings`'
    `auth_max_failures` / `auth_failure_window_s` (the defaults when unset)."""
    throttle: FailedAuthThrottle | None = getattr(state, "auth_throttle", None)
    if throttle is None:
        settings = getattr(state, "settings", None)
        throttle = FailedAuthThrottle(
            getattr(settings, "auth_max_failures", DEFAULT_MAX_FAILURES),
            getattr(settings, "auth_failure_window_s", DEFAULT_WINDOW_S),
        )
        state.auth_throttle = throttle
    return throttle
