"""A cache for whole-catalog answers (the grid's id lists, counts, filter choices, review queues),
valid for one *catalog stamp* and at most ``ttl_s`` seconds, computed by one thread at a time.

Why a stamp read from the catalog and not an event such as "a decision was made here": the server
may run as several processes (uvicorn workers) on one catalog, and a decision written by one must
show in the pages every other one serves. The stamps (:mod:`.catalog_stamps`) are ids the catalog
itself keeps, read in microseconds, so every process sees the same change. An entry made under an
older stamp is never served; the time limit covers what no stamp tracks (a stage such as curate
committing while the app is open shows within ``ttl_s``).

Why single-flight: at 100,000 photos one miss costs tens to hundreds of milliseconds of CPU; when a
decision changes a stamp, the dozens of requests in flight would all recompute the same value at
once (on two cores, that was a third of the server's time). Here the first thread computes and the
others wait for its answer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 256


class StampedCache:
    """``get(key, stamp, make)``: the value made for ``key`` under ``stamp`` within ``ttl_s``, else
    ``make()`` (once, however many threads ask); the least recently used entries go past
    ``max_entries``."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[Hashable, float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._flights: dict[tuple[Hashable, Hashable], threading.Lock] = {}
        self.misses = 0  # values made, for tests and benchmarks

    def _fresh(self, key: Hashable, stamp: Hashable, ttl_s: float) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == stamp and time.monotonic() - entry[1] < ttl_s:
            self._entries.move_to_end(key)
            return True, entry[2]
        return False, None

    def get(self, key: Hashable, stamp: Hashable, make: Callable[[], T], ttl_s: float) -> T:
        with self._lock:
            hit, value = self._fresh(key, stamp, ttl_s)
            if hit:
                return value  # type: ignore[no-any-return]
            flight = self._flights.setdefault((key, stamp), threading.Lock())
        with flight:
            with self._lock:
                hit, value = self._fresh(key, stamp, ttl_s)
                if hit:
                    return value  # type: ignore[no-any-return]
            made_at = time.monotonic()
            made = False
            try:
                value = make()
                made = True
            finally:
                with self._lock:  # stored before the flight ends, so no later thread makes it again
                    if made:
                        self.misses += 1
                        self._entries[key] = (stamp, made_at, value)
                        self._entries.move_to_end(key)
                        while len(self._entries) > self.max_entries:
                            self._entries.popitem(last=False)
                    self._flights.pop((key, stamp), None)
            return value  # type: ignore[no-any-return]


def app_cache(state: Any) -> StampedCache:
    """The app's one :class:`StampedCache` (``app.state.stamped_cache``), made on first use; routes
    call this on the event loop's thread, so two requests never both make one."""
    cache = getattr(state, "stamped_cache", None)
    if cache is None:
        cache = StampedCache()
        state.stamped_cache = cache
    return cache
