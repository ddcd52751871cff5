"""Politeness primitives: rate limits per API key, and exponential backoff with full jitter.

Flickr's limit (3,600 calls an hour) is per key, not per thread, query or process, and the seed's FAQ
warns that a key queried too fast gets disabled. So the limit a client takes from
:func:`shared_limiter` is one for the whole machine: every process of this user that calls with one
key (a harvest beside an enrich, two harvests) draws from one :class:`SharedRateLimit`, whose state is
a small SQLite ledger in the per-user state folder (:func:`state_dir`). The ledger holds only a
SHA-256 of the limiter's key, never an API key itself. :class:`TokenBucket` is the in-process form,
for callers that want a private limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from photocorpus.errors import PhotocorpusError

STATE_DIR_ENV = "PHOTOCORPUS_STATE_DIR"
LEDGER_FILE = "ratelimit.sqlite"
_REGISTRY: dict[str, SharedRateLimit] = {}
_REGISTRY_LOCK = threading.Lock()
# A reservation further ahead than this is taken for a clock that jumped back (a legitimate queue is a
# few slots per waiting process), and the key starts afresh instead of stalling every caller for hours.
_MAX_AHEAD_S = 600.0
_MAX_AHEAD_SLOTS = 64


class RateLimitLedgerError(PhotocorpusError):
    """The per-user rate-limit ledger cannot be opened or written."""


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


def state_dir() -> Path:
    """This user's photocorpus state that outlives any one corpus (the rate-limit ledger).

    ``$PHOTOCORPUS_STATE_DIR``, else ``$XDG_STATE_HOME/photocorpus``, else ``~/.local/state/photocorpus``.
    Per user, so two users of one machine with keys of their own never share a limit.
    """
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "photocorpus"


class SharedRateLimit:
    """``rate_per_hour`` acquisitions per hour for one key, shared by every process that uses the ledger.

    The rule is GCRA (the generic cell rate algorithm, a token bucket in one number): the ledger keeps,
    per key, the time the next call may go out. ``acquire`` reserves a slot in one short ``BEGIN
    IMMEDIATE`` transaction (pushing that time on by ``3600 / rate_per_hour`` seconds) and then sleeps
    until the slot, outside the transaction, so waiting processes never hold the lock. ``burst`` slots
    may go at once after a quiet spell. A process killed while it waits loses only its slot.

    Why by hand: the limiters we know (in-memory token buckets, Redis-backed ones) are either per
    process or need a server; this needs a file and about forty lines. ``clock`` must be the same for
    all processes (wall time by default); ``clock`` and ``sleep`` are replaceable for tests.
    """

    def __init__(
        self,
        key: str,
        rate_per_hour: float,
        burst: int = 1,
        ledger: Path | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_hour <= 0:
            raise ValueError("rate_per_hour must be positive")
        self.rate_per_s = rate_per_hour / 3600.0
        self.interval_s = 3600.0 / rate_per_hour
        self.burst = max(1, burst)
        # hashed again here, so even a caller that passes a raw secret never writes it to disk
        self.ledger_key = hashlib.sha256(key.encode("utf-8")).hexdigest()
        self.ledger = ledger or state_dir() / LEDGER_FILE
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def acquire(self) -> float:
        """Reserve the next free slot of this key, sleep until it comes; returns the seconds waited."""
        with self._lock:
            wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return max(0.0, wait)

    def _reserve(self) -> float:
        conn = self._connection()
        tolerance = (self.burst - 1) * self.interval_s
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT next_free FROM ledger WHERE key = ?", (self.ledger_key,)).fetchone()
            now = self._clock()
            next_free = float(row[0]) if row else now
            if next_free - now > max(_MAX_AHEAD_S, _MAX_AHEAD_SLOTS * self.interval_s):
                next_free = now  # the clock went back: start afresh rather than stall for hours
            slot = max(next_free, now)
            conn.execute(
                """INSERT INTO ledger (key, next_free, calls) VALUES (?, ?, 1)
                   ON CONFLICT (key) DO UPDATE SET next_free = excluded.next_free, calls = calls + 1""",
                (self.ledger_key, slot + self.interval_s),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise self._ledger_error(exc) from None
        return slot - tolerance - now

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A forked child must not share its parent's SQLite handle: it opens its own.
        try:
            self.ledger.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            conn = sqlite3.connect(self.ledger, timeout=60.0, isolation_level=None, check_same_thread=False)
            with contextlib.suppress(OSError):
                os.chmod(self.ledger, 0o600)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # a lost slot after a power cut costs nothing
            conn.execute(
                """CREATE TABLE IF NOT EXISTS ledger (
                       key       TEXT PRIMARY KEY,  -- SHA-256 of the limiter key, never an API key
                       next_free REAL NOT NULL,     -- when the next call may go out (Unix time)
                       calls     INTEGER NOT NULL   -- calls reserved so far, all processes together
                   )"""
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._ledger_error(exc) from None
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _ledger_error(self, exc: Exception) -> RateLimitLedgerError:
        return RateLimitLedgerError(
            f"the shared rate-limit ledger {self.ledger} cannot be used ({type(exc).__name__}: {exc}); "
            f"set ${STATE_DIR_ENV} to a writable local folder and run the command again"
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def shared_limiter(key: str, rate_per_hour: float, burst: int = 1) -> SharedRateLimit:
    """The machine-wide limiter for ``key`` (e.g. a hash of an API key), created on first use.

    One object per key within a process (its threads share one SQLite handle), and one ledger row per
    key across processes, so every process of this user calling with one key shares its budget.
    """
    with _REGISTRY_LOCK:
        limiter = _REGISTRY.get(key)
        ledger = state_dir() / LEDGER_FILE
        if limiter is None or limiter.rate_per_s != rate_per_hour / 3600.0 or limiter.ledger != ledger:
            limiter = SharedRateLimit(key, rate_per_hour, burst, ledger)
            _REGISTRY[key] = limiter
        return limiter


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
