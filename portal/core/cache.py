"""A few seconds of memory for hot read paths whose data rarely changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Values kept in this process for ``ttl_s``; thread-safe; never grows past ``max_entries``
    (keys can come from URLs, so junk must not pile up)."""

    def __init__(self, ttl_s: float, *, max_entries: int = 10_000, remember_none: bool = True) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.remember_none = remember_none
        self._entries: dict[Hashable, tuple[float, V | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], V | None]) -> V | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit and now - hit[0] < self.ttl_s:
            return hit[1]
        value = load()
        if value is not None or self.remember_none:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (now, value)
        return value

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), value)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
