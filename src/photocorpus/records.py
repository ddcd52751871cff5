"""The records that sources hand to the catalog.

A source (Flickr, Instagram, a folder...) turns whatever it reads into :class:`PhotoRecord` values; the
catalog is the only thing that stores them. Keeping this a plain dataclass (not an ORM row) means
sources never depend on the catalog's schema.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ImageURL:
    """One candidate image URL of a photo, with its pixel size when the source tells it."""

    size_key: str  # e.g. "url_l", "url_o", "display"
    url: str
    width: int | None = None
    height: int | None = None


@dataclass(slots=True)
class PhotoRecord:
    """Everything a source knows about one photo. Only ``source``, ``source_id`` and a label are required."""

    source: str
    source_id: str
    labels: list[str]
    title: str | None = None
    caption: str | None = None
    tags: list[str] = field(default_factory=list)
    hashtags: list[str] = field(default_factory=list)
    owner: str | None = None
    owner_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    geo_accuracy: int | None = None
    license: str | None = None
    taken_at: str | None = None  # UTC ISO-8601 (see utc_iso)
    uploaded_at: str | None = None
    page_url: str | None = None
    urls: list[ImageURL] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.source or not str(self.source_id):
            raise ValueError("a photo record needs a source and a source_id")
        if not self.labels:
            raise ValueError(f"photo {self.source}:{self.source_id} has no label")
        self.source_id = str(self.source_id)
        for name in ("lat", "lon"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(float(value)):
                setattr(self, name, None)


def utc_now() -> str:
    """The current time as UTC ISO-8601 with a ``Z``, second precision."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_iso(value: Any) -> str | None:
    """Normalise a timestamp to UTC ISO-8601 (``2017-11-03T14:05:00Z``), or ``None`` if unusable.

    Accepts datetimes, epoch seconds (int, float or digit strings, as Flickr sends them) and ISO-8601
    strings. Naive times are taken as UTC, because that is what every source we read means by them.
    """
    if value is None or value == "":
        return None
    dt: datetime | None = None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            return None
        try:
            dt = datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return utc_iso(int(text))
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt is None:
        return None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
