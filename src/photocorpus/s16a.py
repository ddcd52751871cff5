"""MIRFLICKR-1M s16a per-photo metadata under the names the s16a release gives its kinds.

The s16a page lists nine kinds of "user annotations": title, description, tags, EXIF data, geo
information, album allocation, user comments, notes and group allocation. Our JSON files use exactly
those names, lower-cased with ``_`` for spaces (:data:`SEED_FIELDS`), so a reader holding the s16a
page can map every key without a glossary. This module is both ends of that contract: it turns a
catalog photo into those nine fields for the ``mirflickr-json`` export (:func:`s16a_fields`) and
reads them back from an imported JSON file into the catalog's tables (:func:`parse_s16a`,
:func:`store_s16a`), so that an import followed by an export gives the same values back.

Values come from files nobody here wrote, so every one is type-checked; a value of the wrong shape
is dropped, never an error that stops the import.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from photocorpus.exif import EXIF_SOURCES, store_exif
from photocorpus.records import utc_iso, utc_now

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

# The s16a page's rows, in its order, and the JSON key each gets.
SEED_FIELDS: dict[str, str] = {
    "title": "title",
    "description": "description",
    "tags": "tags",
    "EXIF data": "exif_data",
    "geo information": "geo_information",
    "album allocation": "album_allocation",
    "user comments": "user_comments",
    "notes": "notes",
    "group allocation": "group_allocation",
}
# Counts that travel with them (Flickr's getInfo / comments.getList answers).
COUNT_FIELDS = ("views", "comment_count", "note_count")
ENRICHMENT_KIND = "s16a"  # the enrichment row that remembers an imported s16a file (and keeps its notes)
_TEXT_COLUMNS = ("make", "model", "lens")
_FLOAT_COLUMNS = ("focal_length_mm", "exposure_s", "f_number")


@dataclass(slots=True)
class S16aExtras:
    """The kinds of an s16a file that have no column on ``photos``: they go to the enrichment tables."""

    exif: dict[str, Any] = field(default_factory=dict)  # EXIF_COLUMNS values
    exif_sources: dict[str, str] = field(default_factory=dict)  # column -> api | file | dataset
    albums: list[tuple[str, str | None]] = field(default_factory=list)
    groups: list[tuple[str, str | None]] = field(default_factory=list)
    comments: list[dict[str, Any]] | None = None  # None: the file said nothing about comments
    notes: list[dict[str, Any]] | None = None
    views: int | None = None
    comment_count: int | None = None
    note_count: int | None = None

    def is_empty(self) -> bool:
        return not (self.exif or self.albums or self.groups or self.comments or self.notes) and all(
            v is None for v in (self.views, self.comment_count, self.note_count)
        )


# ---------------------------------------------------------------------------------------------- reading
def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _exif(value: Any) -> tuple[dict[str, Any], dict[str, str]]:
    if not isinstance(value, dict):
        return {}, {}
    fields: dict[str, Any] = {}
    for column in _TEXT_COLUMNS:
        text = _text(value.get(column))
        if text and text.strip():
            fields[column] = text.strip()
    for column in _FLOAT_COLUMNS:
        number = _float(value.get(column))
        if number is not None:
            fields[column] = number
    iso = _int(value.get("iso"))
    if iso is not None:
        fields["iso"] = iso
    taken = utc_iso(value.get("taken_at")) if isinstance(value.get("taken_at"), str) else None
    if taken:
        fields["taken_at"] = taken
    given = value.get("sources") if isinstance(value.get("sources"), dict) else {}
    # A value without a known origin came from the dataset file itself.
    sources = {c: given[c] if given.get(c) in EXIF_SOURCES else "dataset" for c in fields}
    return fields, sources


def _contexts(value: Any) -> list[tuple[str, str | None]]:
    out: dict[str, str | None] = {}
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and _text(item.get("id")):
            out.setdefault(str(_text(item["id"])), _text(item.get("title")))
    return list(out.items())


def _comments(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if isinstance(item, dict) and _text(item.get("id")):
            out.append(
                {
                    "id": _text(item["id"]),
                    "author": _text(item.get("author")),
                    "authorname": _text(item.get("authorname")),
                    "created_at": utc_iso(item.get("created_at")) if item.get("created_at") else None,
                    "text": _text(item.get("text")),
                }
            )
    return out


def _notes(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if not isinstance(item, dict):
            continue
        box = item.get("box")
        out.append(
            {
                "id": _text(item.get("id")),
                "author": _text(item.get("author")),
                "authorname": _text(item.get("authorname")),
                "box": [_int(v) for v in box] if isinstance(box, list) and len(box) == 4 else None,
                "text": _text(item.get("text")),
            }
        )
    return out


def geo_from(meta: dict[str, Any]) -> tuple[float | None, float | None, int | None]:
    """``(lat, lon, accuracy)`` from an s16a ``geo_information`` object (Flickr's location shape)."""
    geo = meta.get("geo_information")
    if not isinstance(geo, dict):
        return None, None, None
    lat = _float(geo.get("latitude", geo.get("lat")))
    lon = _float(geo.get("longitude", geo.get("lon")))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None, None
    return lat, lon, _int(geo.get("accuracy"))


def parse_s16a(meta: dict[str, Any]) -> tuple[S16aExtras, set[str]]:
    """The enrichment kinds of one s16a JSON object, and the keys it used up.

    ``title``, ``description``, ``tags`` and ``geo_information`` are photo columns: the folder import
    reads them with the rest of a photo's metadata, not here.
    """
    exif, sources = _exif(meta.get("exif_data"))
    extras = S16aExtras(
        exif=exif,
        exif_sources=sources,
        albums=_contexts(meta.get("album_allocation")),
        groups=_contexts(meta.get("group_allocation")),
        comments=_comments(meta.get("user_comments")),
        notes=_notes(meta.get("notes")),
        views=_int(meta.get("views")),
        comment_count=_int(meta.get("comment_count")),
        note_count=_int(meta.get("note_count")),
    )
    # A key counts as used only when its value had the s16a shape: a plain folder's sidecar may use
    # "notes" or "views" for something else, and then keeps it among the photo's other metadata.
    shapes = {
        "exif_data": dict, "album_allocation": list, "group_allocation": list, "user_comments": list,
        "notes": list,
    }  # fmt: skip
    used = {k for k, shape in shapes.items() if isinstance(meta.get(k), shape)}
    used |= {k for k in COUNT_FIELDS if getattr(extras, k) is not None}
    return extras, used


def store_s16a(corpus: Corpus, photo_id: int, extras: S16aExtras) -> None:
    """Write one photo's s16a kinds where the enrich stage keeps the same kinds from Flickr's API.

    EXIF goes to ``photo_exif`` (each value keeps its origin), albums and groups to
    ``photo_contexts``, comments to ``photo_comments``, counts to ``photo_social``; notes, which have
    no table of their own, stay in the ``s16a`` enrichment row, as getInfo's notes stay in its row.
    """
    with corpus.transaction() as conn:
        by_source: dict[str, dict[str, Any]] = {}
        for column, value in extras.exif.items():
            by_source.setdefault(extras.exif_sources.get(column, "dataset"), {})[column] = value
        for source, fields in by_source.items():
            store_exif(corpus, photo_id, fields, source)
        conn.executemany(
            "INSERT OR REPLACE INTO photo_contexts (photo_id, kind, context_id, title) VALUES (?, ?, ?, ?)",
            [(photo_id, "album", i, t) for i, t in extras.albums]
            + [(photo_id, "group", i, t) for i, t in extras.groups],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO photo_comments (photo_id, comment_id, author, authorname, created_at,"
            " text) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (photo_id, c["id"], c["author"], c["authorname"], c["created_at"], c["text"])
                for c in extras.comments or []
            ],
        )
        counts = {
            "views": extras.views,
            "comment_count": _count(extras.comment_count, extras.comments),
            "note_count": _count(extras.note_count, extras.notes),
        }
        given = {column: value for column, value in counts.items() if value is not None}
        if given:
            conn.execute("INSERT OR IGNORE INTO photo_social (photo_id) VALUES (?)", (photo_id,))
            for column, value in given.items():  # column names come from the dict above, never the file
                conn.execute(f"UPDATE photo_social SET {column} = ? WHERE photo_id = ?", (value, photo_id))
        conn.execute(
            "INSERT OR REPLACE INTO enrichment (photo_id, kind, status, reason, raw, fetched_at)"
            " VALUES (?, ?, ?, NULL, ?, ?)",
            (
                photo_id,
                ENRICHMENT_KIND,
                "empty" if extras.is_empty() else "ok",
                json.dumps({"notes": extras.notes or []}, ensure_ascii=False),
                utc_now(),
            ),
        )


def _count(stated: int | None, items: list[Any] | None) -> int | None:
    """A count the file states, else the length of the list it gives, else unknown."""
    if stated is not None:
        return stated
    return len(items) if items is not None else None


# ---------------------------------------------------------------------------------------------- writing
def s16a_fields(
    *,
    title: str | None,
    description: str | None,
    tags: list[str],
    lat: float | None,
    lon: float | None,
    geo_accuracy: int | None,
    enriched: dict[str, Any],
) -> dict[str, Any]:
    """The nine s16a fields of one photo, every one present (``null`` or ``[]`` when there is none).

    ``enriched`` is the photo's entry from :func:`photocorpus.export.enriched.enrichment_by_photo`;
    its full description (getInfo) wins over the search result's, which Flickr may shorten.
    """
    exif = enriched.get("exif")
    geo = (
        {"latitude": lat, "longitude": lon, "accuracy": geo_accuracy}
        if lat is not None and lon is not None
        else None
    )
    return {
        "title": title,
        "description": enriched.get("description_full") or description,
        "tags": list(tags),
        "exif_data": exif if exif else None,
        "geo_information": geo,
        "album_allocation": enriched.get("albums", []),
        "user_comments": enriched.get("comments", []),
        "notes": enriched.get("notes", []),
        "group_allocation": enriched.get("groups", []),
    }
