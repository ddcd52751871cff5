"""Logging for photocorpus, with secrets redacted everywhere.

API keys and session secrets are registered with :func:`register_secret`; a filter on the root
handler replaces them in every record, whoever logs it (our code, httpx, instaloader). httpx is also
kept at WARNING, because at INFO it logs full request URLs, query strings included.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading

from photocorpus.textsafety import terminal_safe

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
_PATTERN: re.Pattern[str] | None = None  # every registered secret in every spelling; rebuilt on register
REDACTED = "[REDACTED]"


def register_secret(value: str | None) -> None:
    """Never let ``value`` reach a log line (secrets shorter than 6 characters are not registered)."""
    global _PATTERN
    if value and len(value) >= 6:
        with _LOCK:
            if value not in _SECRETS:
                _SECRETS.add(value)
                _PATTERN = _secrets_pattern(_SECRETS)


def _secrets_pattern(secrets: set[str]) -> re.Pattern[str]:
    """One regex that finds each secret as a server or a library may echo it back.

    A key travels in query strings, so what comes back is not always the exact string: a server may
    echo it upper- or lower-cased, and a URL quoted in an error message has it percent-encoded, once or
    twice, in either hex case, any character or all of them. So each character matches itself in any
    case, or its UTF-8 bytes as ``%XX`` or ``%25XX``; the longest secret is tried first.
    """

    def char(c: str) -> str:
        escaped = "".join(f"%(?:25)?{b:02x}" for b in c.encode("utf-8"))
        return f"(?:{re.escape(c)}|{escaped})"

    alternatives = ["".join(char(c) for c in secret) for secret in sorted(secrets, key=len, reverse=True)]
    return re.compile("|".join(alternatives), re.IGNORECASE)


def redact(text: str) -> str:
    """Replace every registered secret in ``text``, in any case and percent-encoded (see above)."""
    with _LOCK:
        pattern = _PATTERN
    return text if pattern is None else pattern.sub(REDACTED, text)


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

    def format(self, record: logging.LogRecord) -> str:
        """The line with its control characters shown as ``\\xNN`` (newlines kept, for tracebacks).

        Log lines quote URLs, file names and servers' messages, which anyone may craft: printed raw, an
        ``ESC]0;...BEL`` in one would retitle the terminal or forge other output (issue #23).
        """
        return terminal_safe(super().format(record), keep_newlines=True)

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
