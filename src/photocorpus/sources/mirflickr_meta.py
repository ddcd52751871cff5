"""The text metadata files of the MIRFLICKR distributions: EXIF and licence, one small file per photo.

MIRFLICKR-25K ships ``meta/exif_raw/exif<N>.txt``, ``meta/exif/exif<N>.txt`` and
``meta/license/license<N>.txt`` beside ``meta/tags/tags<N>.txt``; MIRFLICKR-1M ships the same kinds
chunked like its images (``exif/<N // 10000>/<N>.txt``, ``license/...``, ``tags/...``). Tags are one per
line and need no parser; these two need a little one. Both parsers are lenient by design: a file that
does not follow the expected shape yields fewer fields, never an error, because the photo is worth
importing without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LicenceFile", "parse_exif_text", "parse_licence_text"]

_KEY_VALUE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 _()./-]{0,60}?)\s*[:\t]\s*(.*?)\s*$")


def parse_exif_text(text: str) -> dict[str, str]:
    """``{tag name: value}`` from a MIRFLICKR EXIF file.

    The files list each tag as a line ``-<name>`` followed by its value on the next line (a value may
    itself start with ``-``, as in ``-0.3 EV``, so the line after a name is always a value). Lines that
    follow a value are a continuation of it. A file without any ``-<name>`` line is read as
    ``name: value`` (or tab-separated) lines instead. The first occurrence of a name wins.
    """
    lines = [line.rstrip("\r") for line in text.split("\n")]
    tags: dict[str, str] = {}
    if any(line.startswith("-") and len(line) > 1 for line in lines):
        name: str | None = None
        expecting_value = False
        for line in lines:
            if expecting_value and name is not None:
                tags.setdefault(name, line.strip())
                expecting_value = False
            elif line.startswith("-") and len(line) > 1:
                name, expecting_value = line[1:].strip(), True
            elif name is not None and line.strip() and name in tags:
                tags[name] = f"{tags[name]}\n{line.strip()}"
        return tags
    for line in lines:
        match = _KEY_VALUE.match(line)
        if match and match.group(2):
            tags.setdefault(match.group(1).strip(), match.group(2))
    return tags


@dataclass(frozen=True, slots=True)
class LicenceFile:
    """What a MIRFLICKR licence file says about its photo."""

    license: str | None = None
    owner: str | None = None
    title: str | None = None
    page_url: str | None = None


_LICENCE_KEYS = {
    "license": "license",
    "licence": "license",
    "owner": "owner",
    "owner name": "owner",
    "creator": "owner",
    "author": "owner",
    "photographer": "owner",
    "title": "title",
    "photo url": "page_url",
    "photo": "page_url",
    "web url": "page_url",
    "url": "page_url",
}


def parse_licence_text(text: str) -> LicenceFile:
    """Licence, owner, title and photo page from a MIRFLICKR licence file.

    ``Key: value`` lines are read by key (``License``, ``Owner``/``Creator``, ``Title``, ``Photo url``
    / ``Web url``; case does not matter). A file with none of those keys is taken as the licence text
    itself, its first non-empty line (e.g. ``Attribution-NonCommercial License``).
    """
    found: dict[str, str] = {}
    for line in text.splitlines():
        if ":" not in line or re.match(r"^\s*https?://", line):
            continue
        key, _, value = line.partition(":")
        field = _LICENCE_KEYS.get(key.strip().lower())
        if field and value.strip():
            found.setdefault(field, value.strip())
    if not found:
        first = next((line.strip() for line in text.splitlines() if line.strip()), None)
        return LicenceFile(license=first)
    page = found.get("page_url")
    return LicenceFile(
        license=found.get("license"),
        owner=found.get("owner"),
        title=found.get("title"),
        page_url=page if page and page.startswith(("http://", "https://")) else None,
    )
