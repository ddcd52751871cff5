"""One naming rule for every MIRFLICKR-style tree: images, s16a JSON metadata and ``.dat`` features.

MIRFLICKR-1M stores photo ``N`` as ``images/<N // 10000>/<N>.jpg``, and its s16a extension puts the
same photo's JSON metadata and CNN features beside it in the same chunking ("10/103169.jpg ->
10/103169.dat"). Every export that writes such a tree names its files through :func:`exchange_name`,
so one photo lands in the same folder under the same name in every format, and a file's place never
depends on which other photos the export holds: a ``--split`` filter, or photos added later, move
nothing (chunking by position in the catalog would).

A photo that is not a MIRFLICKR photo has no number of its own. It is numbered by its catalog id,
which the catalog never reuses, chunked by the same ``id // 10000``, and named ``p<id>``: the ``p``
keeps it apart from a MIRFLICKR number in a corpus that mixes both (MIRFLICKR photo 5 is ``0/5``,
catalog photo 5 from Flickr is ``0/p5``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CHUNK_SIZE", "MIRFLICKR_SOURCE", "ExchangeName", "chunk_of", "exchange_name", "mirflickr_number"]

MIRFLICKR_SOURCE = "mirflickr"  # the source name the folder import gives MIRFLICKR-25K and -1M photos
CHUNK_SIZE = 10_000  # MIRFLICKR-1M: photo N lives in folder N // 10000
_CANONICAL_NUMBER = re.compile(r"^(0|[1-9][0-9]*)$")  # ASCII digits, no leading zeros, so one name each


@dataclass(frozen=True, slots=True)
class ExchangeName:
    """Where one photo goes in a chunked tree: ``<chunk>/<stem>.<ext>``."""

    chunk: int
    stem: str

    def relpath(self, ext: str) -> str:
        return f"{self.chunk}/{self.stem}.{ext}"


def chunk_of(number: int) -> int:
    """The chunk folder of photo ``number`` (MIRFLICKR-1M's ``N // 10000``)."""
    if number < 0:
        raise ValueError(f"photo numbers are never negative, got {number}")
    return number // CHUNK_SIZE


def mirflickr_number(source: str, source_id: str) -> int | None:
    """The MIRFLICKR photo number of a catalog photo, or None when it is not a MIRFLICKR photo.

    Only the canonical spelling counts (``"5"``, not ``"05"``), so that two catalog photos can never
    claim the same number and therefore the same file.
    """
    if source != MIRFLICKR_SOURCE or not _CANONICAL_NUMBER.match(source_id):
        return None
    return int(source_id)


def exchange_name(source: str, source_id: str, photo_id: int) -> ExchangeName:
    """The chunk and file stem of a catalog photo in every MIRFLICKR-style export (module docstring)."""
    number = mirflickr_number(source, source_id)
    if number is not None:
        return ExchangeName(chunk_of(number), str(number))
    return ExchangeName(chunk_of(photo_id), f"p{photo_id}")
