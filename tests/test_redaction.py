"""Secrets are redacted in every spelling a server or a library echoes them back in (issue #23)."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest

from photocorpus.logs import REDACTED, RedactingFilter, redact, register_secret

pytestmark = pytest.mark.reliability

SECRET = "9f86d081884c7d65Ab-secret"


def _percent_all(text: str, case: str = "upper") -> str:
    encoded = "".join(f"%{b:02X}" for b in text.encode("utf-8"))
    return encoded.lower() if case == "lower" else encoded


@pytest.mark.parametrize(
    "echoed",
    [SECRET, SECRET.lower(), SECRET.upper(), SECRET.swapcase(), _percent_all(SECRET),
     _percent_all(SECRET, "lower"), quote(SECRET, safe=""), SECRET[:16] + "%41" + SECRET[17:].upper(),
     "".join(f"%25{b:02x}" for b in SECRET.encode()), _percent_all(SECRET[:8]) + SECRET[8:].lower()],
)  # fmt: skip
def test_every_echoed_spelling_is_redacted(echoed: str) -> None:
    register_secret(SECRET)
    text = f"Invalid API Key (Key has invalid format): {echoed} (sent to /rest?api_key={echoed}&x=1)"
    out = redact(text)
    assert out.count(REDACTED) == 2, out
    assert echoed not in out
    assert out.startswith("Invalid API Key (Key has invalid format): ")


def test_other_text_is_left_alone() -> None:
    register_secret(SECRET)
    text = "9f86d081884c7d65 and secret and %41%42 and ab-secret"  # parts of it, not the whole
    assert redact(text) == text


def test_the_log_filter_redacts_the_variants_too() -> None:
    register_secret(SECRET)
    record = logging.getLogger("httpx").makeRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "GET %s",
        (f"https://x/rest?api_key={quote(SECRET.lower())}",),
        None,
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == f"GET https://x/rest?api_key={REDACTED}"
