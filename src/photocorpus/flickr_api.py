"""A small, polite Flickr REST client.

Why our own and not flickrapi: we need the politeness rules to be ours (one rate limit per key for
every process on the machine, :func:`~photocorpus.ratelimit.shared_limiter`; backoff with jitter on
Flickr's soft errors, Retry-After) and we must guarantee that the API key never shows up in an
exception, a log line or the catalog. Every error raised here is built from the method name and the
non-secret parameters only; httpx's own exception texts, which contain the full URL, are never passed
on.

An answer is read as a stream up to :data:`MAX_ANSWER_BYTES` and parsed with
:func:`~photocorpus.untrusted_json.loads_untrusted`: a proxy or a broken server can send anything, and
an answer that is not JSON, nested too deep, too large or under a ``Content-Encoding`` its bytes do
not match is a malformed answer, retried like a 503 and then refused, never a crash of the command.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from photocorpus.errors import PhotocorpusError, UntrustedJSONError
from photocorpus.logs import redact, register_secret
from photocorpus.ratelimit import backoff_delay, parse_retry_after, shared_limiter
from photocorpus.untrusted_json import INVALID_JSON, loads_untrusted
from photocorpus.version import USER_AGENT

if TYPE_CHECKING:
    from photocorpus.config import FlickrSettings

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.flickr.com/services/rest/"
# Flickr's soft failures: 105 "service currently unavailable", 10 "search API not available",
# 0 "unknown" (sometimes sent under load), 201 "operation failed" on busy shards.
RETRYABLE_CODES = frozenset({0, 10, 105, 201})
AUTH_CODES = frozenset({96, 97, 98, 99, 100})
# The largest answer we read: a 500-photo search page with every extra is ~1 MB, a photo with
# thousands of comments a few MB. It bounds memory against a runaway body or a gzip bomb.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


class FlickrError(PhotocorpusError):
    """Flickr answered ``stat: fail`` with a code that retrying will not fix."""

    def __init__(self, method: str, code: int | None, message: str) -> None:
        self.method, self.code = method, code
        super().__init__(f"Flickr {method} failed (code {code}): {message}")


class FlickrAuthError(FlickrError):
    """The API key was refused (code 100 and friends): stop at once."""


class FlickrUnavailableError(PhotocorpusError):
    """Flickr kept failing (HTTP 429/5xx, timeouts, soft errors) past the retry budget."""


@dataclass
class CallStats:
    """What the client did; the harvest copies it into the catalog's counters."""

    calls: int = 0
    retries: int = 0
    by_cause: dict[str, int] = field(default_factory=dict)

    def retry(self, cause: str) -> None:
        self.retries += 1
        self.by_cause[cause] = self.by_cause.get(cause, 0) + 1


def key_fingerprint(api_key: str) -> str:
    """A non-reversible handle for a key, usable in limiter registries and logs."""
    return "flickr:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


class FlickrClient:
    """Calls Flickr REST methods with rate limiting, retries and key hygiene."""

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str = DEFAULT_API_URL,
        calls_per_hour: float = 3600,
        max_retries: int = 8,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            raise FlickrAuthError("(none)", 100, "no API key: set FLICKR_API_KEY (see the README)")
        register_secret(api_key)
        self._api_key = api_key
        self.api_url = api_url
        self.limiter = shared_limiter(key_fingerprint(api_key), calls_per_hour, burst=1)
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.stats = CallStats()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls, api_key: str, settings: FlickrSettings, api_url: str | None = None
    ) -> FlickrClient:
        """A client with every politeness knob taken from the corpus's ``[flickr]`` settings.

        The endpoint goes through :meth:`FlickrSettings.endpoint` here, not only in the CLI, so a Python
        caller cannot send the key over plain http to a non-loopback host either.
        """
        return cls(
            api_key,
            api_url=settings.endpoint(api_url),
            calls_per_hour=settings.calls_per_hour,
            max_retries=settings.max_retries,
            backoff_base_s=settings.backoff_base_s,
            backoff_cap_s=settings.backoff_cap_s,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FlickrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method`` and return the decoded JSON; retries soft failures, raises hard ones."""
        query = {k: str(v) for k, v in params.items() if v is not None}
        query.update(method=method, format="json", nojsoncallback="1", api_key=self._api_key)
        shown = _describe(method, params)
        for attempt in range(self.max_retries + 1):
            self.limiter.acquire()
            self.stats.calls += 1
            cause, wait = self._attempt(method, query)
            if cause is None:
                return wait  # type: ignore[return-value]  # the decoded payload
            if attempt == self.max_retries:
                break
            self.stats.retry(cause)
            delay = (
                wait
                if isinstance(wait, float)
                else backoff_delay(attempt, self.backoff_base_s, self.backoff_cap_s, self._rng)
            )
            log.info("retrying %s after %s (attempt %d, waiting %.2fs)", shown, cause, attempt + 1, delay)
            self._sleep(delay)
        raise FlickrUnavailableError(
            f"Flickr {shown} kept failing after {self.max_retries} retries (last: {cause}); "
            "re-run the same command later to resume"
        )

    def _attempt(self, method: str, query: Mapping[str, str]) -> tuple[str | None, Any]:
        """One HTTP round trip: (None, payload) on success, (cause, retry_after_or_None) to retry."""
        try:
            with self._http.stream("GET", self.api_url, params=query) as resp:
                if resp.status_code == 429 or resp.status_code >= 500:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.backoff_cap_s)
                    return f"http_{resp.status_code}", retry_after
                if resp.status_code != 200:
                    raise FlickrError(method, None, f"HTTP {resp.status_code}")
                body = _read_at_most(resp, MAX_ANSWER_BYTES + 1)
        except httpx.TimeoutException:
            return "timeout", None
        except httpx.DecodingError:  # e.g. "Content-Encoding: gzip" over bytes that are not gzip
            return "bad_content_encoding", None
        except httpx.TransportError as exc:  # connection refused/reset: never show str(exc) (it has the URL)
            return f"network:{type(exc).__name__}", None
        try:
            payload = loads_untrusted(body, max_bytes=MAX_ANSWER_BYTES)
        except UntrustedJSONError as exc:  # bad_json (the cause's name before the other two), json_too_*
            return ("bad_json" if exc.reason == INVALID_JSON else exc.reason), None
        if not isinstance(payload, dict):
            return "bad_json", None
        if payload.get("stat") == "fail":
            code = _as_int(payload.get("code"))
            # Flickr's text goes into our exception: a server that quotes the key must not show it.
            message = redact(str(payload.get("message", "")))[:300]
            if code in RETRYABLE_CODES:
                return f"stat_fail_{code}", None
            if code in AUTH_CODES:
                raise FlickrAuthError(
                    method,
                    code,
                    f"{message}. Check FLICKR_API_KEY (get a key at https://www.flickr.com/services/apps/create/)",
                )
            raise FlickrError(method, code, message)
        return None, payload


def _read_at_most(resp: httpx.Response, limit: int) -> bytes:
    """The decoded body of ``resp``, stopping once ``limit`` bytes have arrived (the caller refuses
    an answer that long), so a runaway answer never sits in memory whole."""
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _describe(method: str, params: Mapping[str, Any]) -> str:
    """A human description of a call, without secrets (the key is never among ``params``)."""
    shown = {
        k: v for k, v in params.items() if k in ("text", "tags", "page", "min_upload_date", "max_upload_date")
    }
    return f"{method}({', '.join(f'{k}={v}' for k, v in shown.items())})"
