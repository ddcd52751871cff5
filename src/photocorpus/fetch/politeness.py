"""Being a good guest on other people's servers: per-host pacing, pauses, and their rules.

* :class:`HostLimiter` spaces requests to one host (``host_rate_per_s``) and pauses a host entirely
  after it answers 429/503 with Retry-After, so one overloaded CDN slows down, not the whole run.
* :func:`x_robots_disallows` reads ``X-Robots-Tag`` the way img2dataset does (directives, optionally
  addressed to one user agent) and says whether the image must be left alone.
* :func:`url_expired` tells an expired signed CDN URL (Instagram's ``oe=`` expiry, or simply an old
  harvest) from a plain 403, so the photo can be re-harvested instead of written off.

The backoff arithmetic itself (full jitter, Retry-After parsing) is shared with the harvesters in
:mod:`photocorpus.ratelimit`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

USER_AGENT_TOKEN = "photocorpus"


@dataclass(slots=True)
class _HostState:
    next_slot: float = 0.0
    paused_until: float = 0.0


class HostLimiter:
    """Async per-host pacing: at most ``rate_per_s`` request starts per second per host (0: no limit).

    Each caller reserves the next free slot and sleeps until it, so waiting requests start in order,
    evenly spaced, without polling. A pause (Retry-After) holds back every request to that host.
    """

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._clock = clock
        self._hosts: dict[str, _HostState] = {}

    async def wait_turn(self, host: str) -> float:
        """Sleep until ``host`` may be sent the next request; return the seconds waited."""
        state = self._hosts.setdefault(host, _HostState())
        waited = 0.0
        while True:
            now = self._clock()
            slot = max(now, state.next_slot, state.paused_until)
            state.next_slot = slot + self.interval_s
            if slot <= now:
                return waited
            await asyncio.sleep(slot - now)
            waited += slot - now
            if state.paused_until <= self._clock():
                return waited

    def pause(self, host: str, seconds: float) -> None:
        """Hold every request to ``host`` back for ``seconds`` (from now)."""
        state = self._hosts.setdefault(host, _HostState())
        state.paused_until = max(state.paused_until, self._clock() + max(0.0, seconds))


def x_robots_disallows(
    values: Iterable[str], disallowed: Iterable[str], token: str = USER_AGENT_TOKEN
) -> str | None:
    """The first disallowing directive among ``X-Robots-Tag`` header values, or ``None``.

    A value is either ``"noai, noindex"`` (for every crawler) or ``"somebot: noai"`` (for that user
    agent only; ours is ``photocorpus``). ``none`` means ``noindex, nofollow``.
    """
    refused = {d.strip().lower() for d in disallowed}
    for value in values:
        agent, sep, rest = value.partition(":")
        if sep and agent.strip() and " " not in agent.strip():
            # "unavailable_after: <date>" is a directive with an argument, not a user agent
            if agent.strip().lower() == "unavailable_after":
                continue
            if agent.strip().lower() != token:
                continue
            directives = rest
        else:
            directives = value
        for directive in directives.split(","):
            name = directive.strip().lower()
            if name in refused:
                return name
            if name == "none" and "noindex" in refused:
                return "noindex"
    return None


def instagram_expiry(url: str) -> datetime | None:
    """The expiry that Instagram's CDN writes into its URLs (``oe=`` hex epoch seconds), if any."""
    try:
        values = parse_qs(urlsplit(url).query).get("oe")
        return datetime.fromtimestamp(int(values[0], 16), UTC) if values else None
    except (ValueError, OverflowError, OSError):
        return None


def url_expired(url: str, harvested_at: str | None, max_age_h: float, now: datetime | None = None) -> bool:
    """Whether a 403 on ``url`` most likely means the signed URL expired (rather than a ban).

    True when the URL carries an ``oe=`` expiry in the past, or was harvested more than ``max_age_h``
    hours ago.
    """
    now = now or datetime.now(UTC)
    expiry = instagram_expiry(url)
    if expiry is not None and expiry < now:
        return True
    if harvested_at:
        try:
            when = datetime.fromisoformat(harvested_at.replace("Z", "+00:00"))
        except ValueError:
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (now - when).total_seconds() > max_age_h * 3600.0
    return False
