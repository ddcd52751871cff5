"""Politeness primitives: a thread-safe token bucket and exponential backoff with full jitter.

A rate limiter is shared by everything in the process that talks to one service with one key
(``shared_limiter``), because Flickr's limit is per key, not per thread or per query.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

_REGISTRY: dict[str, TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()


class TokenBucket:
    """Allows ``rate_per_hour`` acquisitions per hour on average, with bursts of at most ``burst``."""

    def __init__(
        self,
        rate_per_hour: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_hour <= 0:
            raise ValueError("rate_per_hour must be positive")
        self.rate_per_s = rate_per_hour / 3600.0
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return waited
                delay = (1 - self._tokens) / self.rate_per_s
            self._sleep(delay)
            waited += delay


def shared_limiter(key: str, rate_per_hour: float, burst: int = 1) -> TokenBucket:
    """The process-wide limiter for ``key`` (e.g. a hash of an API key), created on first use."""
    with _REGISTRY_LOCK:
        bucket = _REGISTRY.get(key)
        if bucket is None or bucket.rate_per_s != rate_per_hour / 3600.0:
            bucket = TokenBucket(rate_per_hour, burst)
            _REGISTRY[key] = bucket
        return bucket


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    ceiling = min(cap_s, base_s * (2**attempt))
    return (rng or random).uniform(0, ceiling)


def parse_retry_after(value: str | None, cap_s: float = 3600.0) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); ``None`` if absent or unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap_s)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, min(cap_s, when.timestamp() - time.time()))
