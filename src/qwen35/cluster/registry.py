"""The live request routers of this process, for its front's /metrics (replica occupancy from routing stats).

A module of its own because Ray pickles a custom router class by value: a registry defined beside the class would
be a copy in the router's process; the router imports this module by name, so both sides share it.
"""

from __future__ import annotations

import weakref
from typing import Any

ROUTERS: weakref.WeakSet[Any] = weakref.WeakSet()
