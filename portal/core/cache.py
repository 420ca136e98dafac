"""A few seconds of memory for hot read paths whose data rarely changes: cachetools' TTL cache
(expiry and size-bounded eviction) behind a lock, with the get-or-load our callers share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")


class LockedTTLCache(Generic[V]):
    """Values kept in this process for ``ttl_s``; thread-safe; never more than ``max_entries``
    (keys can come from URLs, so junk must not pile up: the least recently used goes first).

    ``load`` runs outside the lock, so a slow database read never blocks other keys; two threads
    missing the same key at once may both load it, which is harmless for the reads cached here.
    """

    def __init__(self, ttl_s: float, *, max_entries: int = 10_000, remember_none: bool = True) -> None:
        self.remember_none = remember_none
        self._entries: TTLCache[Hashable, V | None] = TTLCache(maxsize=max_entries, ttl=ttl_s)
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], V | None]) -> V | None:
        missing = object()
        with self._lock:
            hit = self._entries.get(key, missing)
        if hit is not missing:
            return hit  # type: ignore[return-value]
        value = load()
        if value is not None or self.remember_none:
            self.put(key, value)
        return value

    def put(self, key: Hashable, value: V | None) -> None:
        with self._lock:
            self._entries[key] = value

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
