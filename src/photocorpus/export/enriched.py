"""The enrich stage's metadata (MIRFLICKR-1M s16a kinds) per photo, as exports write it.

s16a published, per photo, the EXIF, comments, notes, albums and groups it could get "upon
availability". The catalog keeps them in ``photo_exif``, ``photo_social``, ``photo_contexts``,
``photo_comments`` and the raw answers in ``enrichment`` (whether they came from ``enrich flickr`` or
from an imported s16a JSON file); this module joins them back into one JSON object per photo. It reads
in batches of photo ids, so a million-photo export never holds more than one batch of enrichment in
memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from photocorpus.corpus import Corpus
from photocorpus.exif import EXIF_COLUMNS
from photocorpus.s16a import ENRICHMENT_KIND as S16A_KIND

BATCH = 500


def enrichment_by_photo(corpus: Corpus, photo_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """``{photo_id: {"exif": …, "comments": […], "notes": […], "albums": […], "groups": […], …}}``.

    Only photos with something enriched appear. ``unavailable`` maps each kind the source refused
    (private, disabled) to its reason, so a reader can tell "none" from "not asked".
    """
    out: dict[int, dict[str, Any]] = {}
    ids = list(photo_ids)
    # Each query asks for all of a photo's rows in the same chunk of ids, so a photo's comments stay
    # in their ORDER BY order.
    select = corpus.select_in

    def entry(pid: int) -> dict[str, Any]:
        return out.setdefault(int(pid), {})

    for row in select("SELECT * FROM photo_exif WHERE photo_id IN ({marks})", ids):
        values = {c: row[c] for c in EXIF_COLUMNS if row[c] is not None}
        if values:
            entry(row["photo_id"])["exif"] = {**values, "sources": json.loads(row["sources"] or "{}")}
    for row in select("SELECT * FROM photo_social WHERE photo_id IN ({marks})", ids):
        for column in ("comment_count", "note_count", "views"):
            if row[column] is not None:
                entry(row["photo_id"])[column] = row[column]
    for row in select(
        "SELECT photo_id, kind, context_id, title FROM photo_contexts WHERE photo_id IN ({marks})"
        " ORDER BY photo_id, kind, context_id",
        ids,
    ):
        key = "albums" if row["kind"] == "album" else "groups"
        entry(row["photo_id"]).setdefault(key, []).append({"id": row["context_id"], "title": row["title"]})
    for row in select(
        "SELECT * FROM photo_comments WHERE photo_id IN ({marks}) ORDER BY photo_id, created_at, comment_id",
        ids,
    ):
        entry(row["photo_id"]).setdefault("comments", []).append(
            {
                "id": row["comment_id"],
                "author": row["author"],
                "authorname": row["authorname"],
                "created_at": row["created_at"],
                "text": row["text"],
            }
        )
    for row in select(
        "SELECT photo_id, kind, status, reason, raw FROM enrichment WHERE photo_id IN ({marks})", ids
    ):
        if row["status"] == "unavailable":
            entry(row["photo_id"]).setdefault("unavailable", {})[row["kind"]] = row["reason"]
        elif row["kind"] == "info" and row["raw"]:
            entry(row["photo_id"]).update(_from_info(json.loads(row["raw"])))
        elif row["kind"] == S16A_KIND and row["raw"]:
            # Notes of an imported s16a file; getInfo's, when the photo has both, are the fresher ones.
            notes = json.loads(row["raw"]).get("notes") or []
            if notes:
                entry(row["photo_id"]).setdefault("notes", notes)
    return out


def _from_info(payload: dict[str, Any]) -> dict[str, Any]:
    """Notes, the full description, the photo's URLs and the tag authors from ``getInfo``."""
    photo = payload.get("photo") or {}
    result: dict[str, Any] = {}
    notes = (photo.get("notes") or {}).get("note") or []
    if notes:
        result["notes"] = [
            {
                "id": n.get("id"),
                "author": n.get("author"),
                "authorname": n.get("authorname"),
                "box": [_int(n.get(k)) for k in ("x", "y", "w", "h")],
                "text": n.get("_content"),
            }
            for n in notes
            if isinstance(n, dict)
        ]
    description = (photo.get("description") or {}).get("_content")
    if description:
        result["description_full"] = description
    urls = (photo.get("urls") or {}).get("url") or []
    if urls:
        result["urls"] = [
            {"type": u.get("type"), "url": u.get("_content")} for u in urls if isinstance(u, dict)
        ]
    tags = (photo.get("tags") or {}).get("tag") or []
    if tags:
        result["tag_authors"] = [
            {"tag": t.get("_content"), "raw": t.get("raw"), "author": t.get("author"),
             "authorname": t.get("authorname")}
            for t in tags
            if isinstance(t, dict)
        ]  # fmt: skip
    return result


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
