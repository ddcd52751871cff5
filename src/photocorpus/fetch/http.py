"""The HTTP side of fetch: an aiohttp client that is safe and polite, with retries.

One :class:`Downloader` per run owns the session and everything that must be shared across requests:
the connection pool (a global and a per-host connection limit), the per-host pacing, the SSRF policy
and the in-flight byte budget. :meth:`Downloader.fetch` turns one URL into bytes or a reason code and
never raises for anything the network or the server does.

Why aiohttp: its C HTTP parser costs a fraction of a pure-Python client per request, which matters at
hundreds of photos per second on two cores, and its resolver hook lets the SSRF guard check the very
addresses that the connection then uses (see :mod:`photocorpus.netguard`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from photocorpus import reasons
from photocorpus.config import FetchSettings
from photocorpus.fetch.politeness import HostLimiter, x_robots_disallows
from photocorpus.netguard import (
    AddressPolicy,
    BlockedAddressError,
    BlockedURLError,
    check_connect_address,
    check_resolved,
    check_url,
)
from photocorpus.ratelimit import backoff_delay, parse_retry_after
from photocorpus.version import USER_AGENT

log = logging.getLogger("photocorpus.fetch")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 16


@dataclass(slots=True)
class Download:
    """What one URL gave: the body, or a reason code (``http_404``, ``timeout``...)."""

    url: str  # the URL finally requested, after redirects
    status: int | None = None
    body: bytes | None = None
    reason: str | None = None
    detail: str | None = None
    retries: int = 0
    waited_s: float = 0.0  # backoff and Retry-After time
    elapsed_s: float = 0.0
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None and self.body is not None


class ByteBudget:
    """Bounds the downloaded bytes held in memory: new downloads wait while the budget is spent.

    A response with a Content-Length reserves its size before its body is read (waiting while the
    budget is spent); one without is counted as it arrives. Bytes are released once the worker has
    rendered the image. So the bound is the budget, plus one response when nothing else is held, plus
    whatever responses of unknown length are receiving.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(1, limit_bytes)
        self.used = 0
        self.peak = 0
        self._room = asyncio.Event()
        self._room.set()

    async def wait_for_room(self) -> None:
        """Wait until some of the budget is free (before starting a download)."""
        while self.used >= self.limit:
            self._room.clear()
            await self._room.wait()

    async def reserve(self, n: int) -> float:
        """Wait until ``n`` more bytes fit (or nothing else is held), then count them; return the wait.

        Waiting here holds nothing, and every holder releases without waiting for anyone: no deadlock.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        while self.used > 0 and self.used + n > self.limit:
            self._room.clear()
            await self._room.wait()
        self.add(n)
        return loop.time() - start

    def add(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def release(self, n: int) -> None:
        self.used -= n
        self._room.set()


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses hosts resolving to addresses the policy forbids.

    The connector connects to exactly the addresses returned here, so the check cannot be bypassed
    by a name that resolves differently the second time (DNS rebinding).
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        check_resolved(host, [r["host"] for r in results], self._policy)
        return results

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(policy: AddressPolicy) -> Callable[[tuple[Any, ...]], socket.socket]:
    """A socket factory for the connector that checks the address of every connection it opens.

    aiohttp does not call the resolver for a host that is already an IP address, so the resolver alone
    would leave IP literals to the URL check. This factory sees the address each socket is about to
    connect to, however it was found, and refuses a forbidden one with :class:`BlockedAddressError`.
    """

    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        check_connect_address(str(sockaddr[0]), policy)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


class _Failure(Exception):
    """One attempt failed with a reason code (internal control flow)."""

    def __init__(self, reason: str, detail: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.status, self.retry_after = reason, detail, status, retry_after


class Downloader:
    """Async downloads under one settings object; use as ``async with Downloader(...) as dl``."""

    def __init__(
        self,
        settings: FetchSettings,
        policy: AddressPolicy,
        budget: ByteBudget | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.budget = budget or ByteBudget(settings.max_inflight_mb * 1_000_000)
        self.hosts = HostLimiter(settings.host_rate_per_s)
        self.rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self.user_agent = settings.user_agent or USER_AGENT

    async def __aenter__(self) -> Downloader:
        s = self.settings
        connector = aiohttp.TCPConnector(
            limit=s.concurrency,
            limit_per_host=s.per_host_connections,
            resolver=GuardedResolver(self.policy),
            socket_factory=guarded_socket_factory(self.policy),
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=s.connect_timeout_s, sock_read=s.read_timeout_s
            ),
            headers={
                "User-Agent": self.user_agent,
                "Accept": "image/jpeg,image/png,image/webp,image/gif,image/*;q=0.8,*/*;q=0.5",
                "Accept-Encoding": "identity",
            },
            auto_decompress=False,
            trust_env=False,  # an environment proxy would resolve names where our guard cannot see
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ public
    async def fetch(self, url: str) -> Download:
        """GET ``url`` with redirects, checks and retries; the body is counted in the byte budget.

        The caller releases ``len(result.body)`` from :attr:`budget` when it is done with the body.
        """
        s = self.settings
        started = time.monotonic()
        retries = 0
        waited = 0.0
        while True:
            result = await self._attempt(url)
            result.retries, result.waited_s = retries, waited
            result.elapsed_s = time.monotonic() - started
            if result.ok or not _retryable(result) or retries >= s.max_retries:
                if not result.ok:
                    log.info(
                        "giving up on %s: %s (%s) after %d retries",
                        url,
                        result.reason,
                        result.detail,
                        retries,
                    )
                return result
            if result.retry_after_s is not None and result.retry_after_s > s.max_retry_after_s:
                result.detail = (
                    f"{result.detail}; Retry-After {result.retry_after_s:.0f} s exceeds "
                    f"max_retry_after_s={s.max_retry_after_s:.0f}: retry later with --retry-failed"
                )
                log.info("not waiting %.0f s for %s (%s)", result.retry_after_s, url, result.reason)
                return result
            if result.retry_after_s is not None:
                delay = result.retry_after_s
                self.hosts.pause(_host_key(result.url), delay)
                how = "Retry-After"
            else:
                delay = backoff_delay(retries, s.backoff_base_s, s.backoff_cap_s, self.rng)
                how = "backoff"
            retries += 1
            log.info(
                "retry %d/%d of %s after %s (%s): %s %.2f s",
                retries,
                s.max_retries,
                url,
                result.reason,
                result.detail,
                how,
                delay,
            )
            await asyncio.sleep(delay)
            waited += delay

    # ------------------------------------------------------------------ one attempt
    async def _attempt(self, url: str) -> Download:
        current = url
        status: int | None = None
        try:
            for hop in range(self.settings.max_redirects + 1):
                try:
                    checked = check_url(current, self.policy)
                except BlockedURLError as exc:
                    raise _Failure(reasons.BLOCKED_URL, str(exc)) from None
                current = str(checked)  # the normalised URL that is requested, and reported
                await self.hosts.wait_turn(_host_key(current, checked.raw_host))
                async with asyncio.timeout(self.settings.total_timeout_s) as deadline:
                    status, location, body = await self._request(checked, deadline)
                if location is None:
                    return Download(current, status, body)
                current = urljoin(current, location)
                log.debug("redirect %d from %s to %s", hop + 1, url, current)
            raise _Failure(
                reasons.TOO_MANY_REDIRECTS, f"more than {self.settings.max_redirects} redirects", status
            )
        except _Failure as exc:
            return Download(current, exc.status, None, exc.reason, exc.detail, retry_after_s=exc.retry_after)
        except BlockedURLError as exc:  # raised by the resolver, after DNS
            return Download(current, status, None, reasons.BLOCKED_URL, str(exc))
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            return Download(current, status, None, reasons.TIMEOUT, _describe(exc) or "timed out")
        except aiohttp.ClientPayloadError as exc:
            return Download(current, status, None, reasons.TRUNCATED_BODY, _describe(exc))
        except aiohttp.InvalidURL as exc:
            return Download(current, status, None, reasons.BLOCKED_URL, f"invalid URL: {exc}")
        except aiohttp.ClientConnectorError as exc:  # the socket factory's refusal arrives wrapped
            if isinstance(exc.os_error, BlockedAddressError):
                return Download(current, status, None, reasons.BLOCKED_URL, str(exc.os_error))
            return Download(current, status, None, reasons.CONNECTION_ERROR, _describe(exc))
        except (aiohttp.ClientError, OSError) as exc:
            return Download(current, status, None, reasons.CONNECTION_ERROR, _describe(exc))

    async def _request(self, url: URL, deadline: asyncio.Timeout) -> tuple[int, str | None, bytes | None]:
        """One GET without following redirects: (status, redirect location or None, body)."""
        assert self._session is not None, "use Downloader as an async context manager"
        s = self.settings
        async with self._session.get(url, allow_redirects=False) as resp:
            status = resp.status
            if status in REDIRECT_STATUSES:
                location = resp.headers.get("Location")
                if not location:
                    raise _Failure(reasons.http_reason(status), f"HTTP {status} without Location", status)
                return status, location, None
            if status >= 300:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), cap_s=86_400.0)
                raise _Failure(
                    reasons.http_reason(status),
                    f"HTTP {status} {resp.reason or ''}".strip(),
                    status,
                    retry_after,
                )
            if s.respect_x_robots_tag:
                directive = x_robots_disallows(resp.headers.getall("X-Robots-Tag", []), s.x_robots_disallowed)
                if directive is not None:
                    raise _Failure(reasons.DISALLOWED_BY_X_ROBOTS_TAG, f"X-Robots-Tag: {directive}", status)
            length = resp.content_length
            if length is not None and length > s.max_response_bytes:
                raise _Failure(
                    reasons.RESPONSE_TOO_LARGE,
                    f"Content-Length {length} > max_response_bytes {s.max_response_bytes}",
                    status,
                )
            return status, None, await self._read_body(resp, status, deadline)

    async def _read_body(self, resp: aiohttp.ClientResponse, status: int, deadline: asyncio.Timeout) -> bytes:
        limit = self.settings.max_response_bytes
        if resp.content_length is not None:  # already checked against the limit: read it in one go
            waited = await self.budget.reserve(resp.content_length)
            when = deadline.when()
            if waited and when is not None:  # waiting for memory is not the server's slowness
                deadline.reschedule(when + waited)
            try:
                body = await resp.read()
            except BaseException:
                self.budget.release(resp.content_length)
                raise
            self.budget.add(len(body) - resp.content_length)
            return body
        chunks: list[bytes] = []
        received = 0
        try:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                received += len(chunk)
                self.budget.add(len(chunk))
                if received > limit:
                    raise _Failure(
                        reasons.RESPONSE_TOO_LARGE, f"more than max_response_bytes {limit} received", status
                    )
                chunks.append(chunk)
        except BaseException:
            self.budget.release(received)
            raise
        return b"".join(chunks)


def _retryable(result: Download) -> bool:
    return result.reason in reasons.TRANSIENT or (
        result.status in RETRY_STATUSES and result.reason is not None
    )


def _host_key(url: str, host: str | None = None) -> str:
    parts = urlsplit(url)
    return f"{(host or parts.hostname or '').lower()}:{parts.port or ''}"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
