"""Rate limiting, backoff and secret redaction: the politeness and hygiene primitives."""

from __future__ import annotations

import contextlib
import io
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from photocorpus.logs import (
    REDACTED,
    RedactingFilter,
    _PhotocorpusHandler,
    redact,
    register_secret,
    setup_logging,
)
from photocorpus.ratelimit import (
    RateLimitLedgerError,
    SharedRateLimit,
    TokenBucket,
    backoff_delay,
    parse_retry_after,
    shared_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_token_bucket_holds_the_hourly_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(3600, burst=1, clock=clock, sleep=clock.sleep)
    for _ in range(11):
        bucket.acquire()
    assert clock.now == pytest.approx(10.0)  # 3,600 per hour = one per second after the first


def test_token_bucket_allows_a_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(360, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        assert bucket.acquire() == 0.0
    bucket.acquire()
    assert clock.now == pytest.approx(10.0)  # 360 per hour = one per 10 s once the burst is spent


def test_limiters_on_one_ledger_share_one_key_budget_and_keys_stay_apart(tmp_path) -> None:
    """Two limiters on one ledger file stand for two processes (each has its own SQLite handle): on one
    key they share one rate; another key has a budget of its own."""
    clock = FakeClock()
    ledger = tmp_path / "ratelimit.sqlite"
    harvest, enrich = (
        SharedRateLimit("flickr:aaaa", 3600, ledger=ledger, clock=clock, sleep=clock.sleep) for _ in range(2)
    )
    for _ in range(5):
        harvest.acquire()
        enrich.acquire()
    assert clock.now == pytest.approx(9.0)  # 10 calls at one per second together, not 5 s each
    other = SharedRateLimit("flickr:bbbb", 3600, ledger=ledger, clock=clock, sleep=clock.sleep)
    assert other.acquire() == 0.0 and clock.now == pytest.approx(9.0)
    burst = SharedRateLimit("flickr:cccc", 360, burst=3, ledger=ledger, clock=clock, sleep=clock.sleep)
    assert [burst.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert burst.acquire() == pytest.approx(10.0)  # 360 per hour once the burst is spent


def test_the_ledger_lives_in_the_state_dir_and_never_holds_the_key(tmp_path, monkeypatch) -> None:
    from photocorpus.flickr_api import key_fingerprint

    monkeypatch.setenv("PHOTOCORPUS_STATE_DIR", str(tmp_path / "state"))
    api_key = "0123456789abcdef-the-secret-key"
    limiter = shared_limiter(key_fingerprint(api_key), 3.6e9)
    limiter.acquire()
    assert limiter.ledger == tmp_path / "state" / "ratelimit.sqlite" and limiter.ledger.exists()
    assert shared_limiter(key_fingerprint(api_key), 3.6e9) is limiter  # one per key in a process
    limiter.close()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir())
    assert api_key.encode() not in stored and key_fingerprint(api_key).encode() not in stored


def test_an_unusable_state_dir_is_a_clear_error(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    limiter = SharedRateLimit("flickr:dddd", 3600, ledger=blocker / "ratelimit.sqlite")
    with pytest.raises(RateLimitLedgerError, match="PHOTOCORPUS_STATE_DIR"):
        limiter.acquire()


def test_backoff_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, 1.0, 30.0, rng) for a in range(8) for _ in range(50)]
    assert max(delays) <= 30.0 and min(delays) >= 0.0
    first = [backoff_delay(0, 1.0, 30.0, rng) for _ in range(200)]
    fifth = [backoff_delay(4, 1.0, 30.0, rng) for _ in range(200)]
    assert max(first) <= 1.0 < max(fifth) <= 16.0
    assert len(set(first)) > 150  # jittered, not a fixed schedule


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("99999", cap_s=60) == 60.0
    future = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= parse_retry_after(format_datetime(future, usegmt=True)) <= 31
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_registered_secrets_are_redacted_from_any_logger() -> None:
    secret = "abcdef0123456789secret"
    register_secret(secret)
    assert redact(f"GET /rest?api_key={secret}&x=1") == f"GET /rest?api_key={REDACTED}&x=1"
    logger = logging.getLogger("httpx")
    handler_filter = RedactingFilter()
    record = logger.makeRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: %s", (f"?api_key={secret}",), None
    )
    handler_filter.filter(record)
    assert secret not in record.getMessage() and REDACTED in record.getMessage()


@contextlib.contextmanager
def _cli_log_handler_writing_to(stream: io.StringIO, *, verbose: bool) -> Iterator[None]:
    """setup_logging's own handler, writing to ``stream`` for the block; the logging state as it was after."""
    root = logging.getLogger()
    before, levels = list(root.handlers), (root.level, logging.getLogger("photocorpus").level)
    setup_logging(verbose=verbose)
    handler = next(h for h in root.handlers if isinstance(h, _PhotocorpusHandler))
    old_stream = handler.setStream(stream)
    try:
        yield
    finally:
        handler.setStream(old_stream)
        for added in set(root.handlers) - set(before):
            root.removeHandler(added)
        root.setLevel(levels[0])
        logging.getLogger("photocorpus").setLevel(levels[1])


def test_the_cli_log_handler_redacts_every_logger() -> None:
    """setup_logging's stderr handler carries the redacting filter, so a secret that any library logs
    (httpx logs full request URLs, query strings included) comes out as [REDACTED]."""
    secret = "handler-secret-77e1c0ffee"
    register_secret(secret)
    stream = io.StringIO()
    with _cli_log_handler_writing_to(stream, verbose=True):
        logging.getLogger("httpx").warning("HTTP Request: GET /rest?api_key=%s", secret)
        logging.getLogger("photocorpus.test").info("calling with %s", secret)
    text = stream.getvalue()
    assert secret not in text and text.count(REDACTED) == 2, text


def test_the_cli_log_handler_escapes_control_characters() -> None:
    """A logged URL or server message may carry terminal escapes (``ESC]0;title BEL``, C1 CSI): the
    handler shows them as ``\\xNN`` and keeps the newlines of a multi-line message (issue #23)."""
    stream = io.StringIO()
    with _cli_log_handler_writing_to(stream, verbose=True):
        logging.getLogger("photocorpus.test").warning("from %s", "x\x1b]0;pwned\x07\x9b31m\x00\nsecond line")
    text = stream.getvalue()
    assert not any(c in text for c in "\x00\x07\x1b\x9b"), repr(text)
    assert "x\\x1b]0;pwned\\x07\\x9b31m\\x00" in text and "\nsecond line" in text


def test_a_log_line_that_cannot_be_written_does_not_dump_the_exception_being_handled(capfd) -> None:
    """Our handler's stream is closed (a finished in-process CLI run, a broken pipe) while a library
    logs from inside its ``except`` block, and that exception quotes a secret. logging's default would
    print its traceback chained to that exception, secret and all; ours prints one redacted line."""
    secret = "closed-stream-secret-5eed"
    register_secret(secret)
    closed = io.StringIO()
    closed.close()
    with _cli_log_handler_writing_to(closed, verbose=False):
        try:
            raise ConnectionError(f"server said: bad session {secret}")
        except ConnectionError:
            logging.getLogger("photocorpus.test").warning("retrying after %s", f"session {secret}")
    _out, err = capfd.readouterr()
    assert secret not in err
    assert "a log line could not be written (ValueError)" in err and REDACTED in err
    assert "Traceback" not in err
