"""The share of each engine's slots that streamed sessions may hold, so whole texts always find room."""

from __future__ import annotations

import threading
from collections import Counter

from ..routing import Route


class SessionSlots:
    """How many streamed sessions each engine holds at once: a share of its slots, at least one."""

    def __init__(self, share: float):
        self.share = share
        self._used: Counter[str] = Counter()
        self._lock = threading.Lock()

    def capacity(self, route: Route) -> int:
        return max(1, int(route.engine.max_slots * self.share))

    def used(self, key: str) -> int:
        return self._used[key]

    def acquire(self, route: Route) -> bool:
        with self._lock:
            if self._used[route.key] >= self.capacity(route):
                return False
            self._used[route.key] += 1
            return True

    def release(self, route: Route) -> None:
        with self._lock:
            self._used[route.key] = max(0, self._used[route.key] - 1)
