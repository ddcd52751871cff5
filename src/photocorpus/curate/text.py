"""Caption and hashtag text handling shared by sources, curate, featurize and learn.

Captions are untrusted user text: these functions only ever *read* them, and nothing here turns text
into paths or markup.
"""

from __future__ import annotations

import re
import unicodedata

# A hashtag is '#' followed by letters, digits, marks or underscores in any script, as Instagram allows;
# it must not be glued to a preceding word character (so "a#b" and "&#39;" are not hashtags).
_HASHTAG = re.compile(r"(?<![\w&])#([^\W_]\w*|_\w+)", re.UNICODE)


def extract_hashtags(text: str | None) -> list[str]:
    """Hashtags in order of first appearance, NFKC-normalised and lower-cased, without the ``#``."""
    if not text:
        return []
    found: dict[str, None] = {}
    for match in _HASHTAG.finditer(unicodedata.normalize("NFKC", text)):
        found.setdefault(match.group(1).casefold(), None)
    return list(found)
