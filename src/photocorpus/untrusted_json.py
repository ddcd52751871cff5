"""JSON from outside photocorpus (sidecars, URL lists, API answers), parsed with a size and depth limit.

Why not plain ``json.loads``: it recurses once per nesting level, so 100,000 ``[`` in a metadata file
end in a ``RecursionError`` that no ``except ValueError`` catches and that kills the whole command,
on every re-run; and a large document is parsed in full before anyone looks at it. Here the size is
checked first, then the nesting depth by a linear scan that builds nothing, and only then is the
document parsed, which at that depth cannot recurse far. Every refusal is an
:class:`~photocorpus.errors.UntrustedJSONError` with a stable ``reason``, so callers record it like
any other unreadable input.

Why :data:`MAX_DEPTH` is 100: the deepest JSON we read for real nests about 10 levels (an instaloader
post: structure, node, edge, edges, node, ...), a Flickr answer about 5 and a URL-list row 2, while
Python's recursion limit is 1,000 frames, shared with the code that later walks, stores or dumps the
parsed value. 100 is ten times the real depth and a tenth of the limit.

This module imports nothing from the stage packages, so every stage can use it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from photocorpus.errors import UntrustedJSONError

MAX_DEPTH = 100

JSON_TOO_LARGE = "json_too_large"
JSON_TOO_DEEP = "json_too_deep"
INVALID_JSON = "invalid_json"

# A JSON string (escapes included, possessive so an unterminated one cannot make the scan quadratic),
# or one bracket. Brackets inside strings are part of a string match, so they never count.
_TOKEN = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?|[\[\]{}]', re.DOTALL)


def nesting_exceeds(text: str, max_depth: int) -> bool:
    """Whether ``text`` opens more than ``max_depth`` arrays or objects inside each other.

    Exact for valid JSON; for invalid JSON it may say either, which is fine: invalid JSON is refused
    anyway, and the parser stops at the first error, before it could nest deeper than the scan saw.
    """
    if text.count("[") + text.count("{") <= max_depth:  # most documents: two C-speed counts, no scan
        return False
    depth = 0
    for match in _TOKEN.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "]}":
            depth -= 1
    return False


def loads_untrusted(data: str | bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON that came from outside, refusing what is too large, too deep or not JSON.

    ``max_bytes`` caps the size of ``bytes`` input, and the length in characters of ``str`` input
    (already decoded: the cap then bounds the work, not the file). Raises
    :class:`~photocorpus.errors.UntrustedJSONError`, whose message says what was wrong.
    """
    if len(data) > max_bytes:
        raise UntrustedJSONError(JSON_TOO_LARGE, f"larger than {max_bytes} bytes")
    if isinstance(data, bytes | bytearray):
        try:  # what json.loads does with bytes: UTF-8, -16 or -32, told apart by the first bytes
            text = bytes(data).decode(json.detect_encoding(data), "surrogatepass")
        except UnicodeDecodeError as exc:
            raise UntrustedJSONError(INVALID_JSON, f"not valid text: {exc}") from None
    else:
        text = data
    if nesting_exceeds(text, max_depth):
        raise UntrustedJSONError(JSON_TOO_DEEP, f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UntrustedJSONError(INVALID_JSON, str(exc)) from None
    except RecursionError:  # the scan makes this unreachable; kept so a miss is a refusal, not a crash
        raise UntrustedJSONError(JSON_TOO_DEEP, f"nested deeper than {max_depth} levels") from None
