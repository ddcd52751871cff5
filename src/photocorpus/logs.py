"""Logging for photocorpus, with secrets redacted everywhere.

API keys and session secrets are registered with :func:`register_secret`; a filter on the root
handler replaces them in every record, whoever logs it (our code, httpx, instaloader). httpx is also
kept at WARNING, because at INFO it logs full request URLs, query strings included.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
REDACTED = "[REDACTED]"


def register_secret(value: str | None) -> None:
    """Never let ``value`` reach a log line (secrets shorter than 6 characters are not registered)."""
    if value and len(value) >= 6:
        with _LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """Replace every registered secret in ``text``."""
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message with secrets removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr: INFO from photocorpus at ``--verbose``, WARNING otherwise."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _PhotocorpusHandler)]
    if ours:
        # Run again in one process (Python callers, tests): write to today's stderr, which may have
        # been replaced since, not to a stream that may be closed by now.
        for handler in ours:
            handler.stream = sys.stderr
    else:
        handler = _PhotocorpusHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("photocorpus").setLevel(logging.DEBUG if verbose else logging.WARNING)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _PhotocorpusHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our stderr handler (a distinct class so setup_logging can run twice without doubling output)."""

    def handleError(self, record: logging.LogRecord) -> None:
        """One redacted line instead of logging's traceback dump.

        When a line cannot be written (stderr closed, a broken pipe), logging prints the handler's
        traceback, chained to whatever exception is being handled at the time, and that can be a
        library's error quoting a server's message, secrets included (seen with instaloader).
        """
        if not logging.raiseExceptions:
            return
        exc = sys.exc_info()[1]
        with contextlib.suppress(Exception):
            sys.__stderr__.write(
                f"photocorpus: a log line could not be written ({type(exc).__name__}): "
                f"{redact(record.getMessage())[:300]}\n"
            )
