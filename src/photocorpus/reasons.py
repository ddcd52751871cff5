"""Per-photo failure reasons: short, stable codes recorded on a photo's stage row.

They are data, not exceptions: status tables group by them, ``--retry-failed`` selects by them, and
scripts match on them, so the codes never change once published.
"""

from __future__ import annotations

EMPTY_FILE = "empty_file"  # zero bytes
NOT_AN_IMAGE = "not_an_image"  # no known image signature (HTML page, text...)
CORRUPT_IMAGE = "corrupt_image"  # looks like an image, fails to decode (truncated, broken data)
DECOMPRESSION_BOMB = "decompression_bomb"  # more pixels than the configured limit
UNSUPPORTED_FORMAT = "unsupported_format"  # an image, but of a format we do not store
READ_ERROR = "read_error"  # the source file could not be read (permissions, vanished)
NOT_A_REGULAR_FILE = "not_a_regular_file"  # import: a FIFO, device or folder under an image's name
SYMLINK_OUTSIDE_SOURCE = "symlink_outside_source"  # import: links out of the folder (--follow-symlinks)
TOO_SMALL = "too_small"
URL_EXPIRED = "url_expired"  # a signed CDN URL (Instagram's) past its expiry: re-harvest for a fresh one

# fetch: the network and the site's rules (HTTP errors are ``http_<status>``, see http_reason)
TIMEOUT = "timeout"  # connect, read or total download time ran out (slow drip included)
CONNECTION_ERROR = "connection_error"  # refused, reset, DNS failure, TLS failure
TRUNCATED_BODY = "truncated_body"  # the connection closed before Content-Length bytes arrived
RESPONSE_TOO_LARGE = "response_too_large"  # more bytes than the configured maximum response size
TOO_MANY_REDIRECTS = "too_many_redirects"
BLOCKED_URL = "blocked_url"  # not http(s), or a private/loopback/link-local destination (SSRF guard)
DISALLOWED_BY_X_ROBOTS_TAG = "disallowed_by_x_robots_tag"  # noai / noimageai / noindex / noimageindex
NO_URL = "no_url"  # the source gave no image URL for this photo
NO_ALLOWED_SIZE = "no_allowed_size"  # --size-policy strict (im2gps): none of the allowed sizes exists
BAD_ASPECT_RATIO = "bad_aspect_ratio"  # width / height outside the configured range
INTERNAL_ERROR = "internal_error"  # a bug in photocorpus hit this photo (logged with its traceback)

# Reasons that may go away on their own; everything else is a property of the bytes.
TRANSIENT = frozenset({READ_ERROR, TIMEOUT, CONNECTION_ERROR, TRUNCATED_BODY})


def http_reason(status: int) -> str:
    """The reason code of an HTTP error status, e.g. ``http_404``."""
    return f"http_{int(status)}"


def is_transient(reason: str | None) -> bool:
    """Whether a failure could go away by itself: network trouble, 408, 425, 429 and 5xx answers."""
    if not reason:
        return False
    if reason in TRANSIENT:
        return True
    if reason.startswith("http_") and reason[5:].isdigit():
        status = int(reason[5:])
        return status in (408, 425, 429) or 500 <= status <= 599
    return False
