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
TOO_SMALL = "too_small"

# Reasons that may go away on their own; everything else is a property of the bytes.
TRANSIENT = frozenset({READ_ERROR})
