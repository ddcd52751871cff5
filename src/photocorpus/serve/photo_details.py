"""Everything the photo page shows about one photo, as JSON-ready values (``/api/photo/{id}``).

All of it is read in the caller's snapshot; user text is returned as it is stored and becomes page
text through autoescaped templates or ``textContent``, never markup.
"""

from __future__ import annotations

import json
from typing import Any

from photocorpus.corpus import Corpus
from photocorpus.export.attribution import credit_line, is_creative_commons

DUP_GROUP_SHOWN = 60


def _rows(corpus: Corpus, sql: str, *params: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in corpus.conn.execute(sql, params)]


def photo_details(corpus: Corpus, photo_id: int) -> dict[str, Any] | None:
    """The photo's record, curation, EXIF and enrichment, ImageNet top-5 and ontology, duplicate
    group and attribution line; None for an unknown id. Neighbours and history are added by the
    caller (they need the feature index and the decisions module)."""
    photo = corpus.photo(photo_id)
    if photo is None:
        return None
    photo.pop("urls", None)
    photo.pop("extra", None)
    file = photo.get("file")
    if file:
        photo["file"] = {k: file[k] for k in ("width", "height", "bytes", "format", "sha256", "stored_at")}
    cur = corpus.conn.execute("SELECT * FROM curation WHERE photo_id = ?", (photo_id,)).fetchone()
    curation: dict[str, Any] = {}
    if cur is not None:
        curation = {
            k: cur[k]
            for k in (
                "dup_group", "duplicate_of", "dup_method", "bot", "bot_reason", "caption_clean", "language",
                "split", "exclusion",
            )
        }  # fmt: skip
        curation["quality_flags"] = json.loads(cur["quality_flags"] or "[]")
        curation["quality_scores"] = json.loads(cur["quality_scores"] or "{}")
        curation["bot"] = bool(curation["bot"])
    photo["curation"] = curation
    photo["exif"] = next(iter(_rows(corpus, "SELECT * FROM photo_exif WHERE photo_id = ?", photo_id)), None)
    if photo["exif"]:
        photo["exif"].pop("photo_id", None)
        photo["exif"]["sources"] = json.loads(photo["exif"]["sources"] or "{}")
    social = _rows(
        corpus, "SELECT comment_count, note_count, views FROM photo_social WHERE photo_id = ?", photo_id
    )
    photo["social"] = social[0] if social else None
    photo["contexts"] = _rows(
        corpus,
        "SELECT kind, context_id, title FROM photo_contexts WHERE photo_id = ? ORDER BY kind, title",
        photo_id,
    )
    photo["comments"] = _rows(
        corpus,
        "SELECT authorname, created_at, text FROM photo_comments WHERE photo_id = ? "
        "ORDER BY created_at LIMIT 20",
        photo_id,
    )
    photo["enrichment"] = _rows(
        corpus,
        "SELECT kind, status, reason, fetched_at FROM enrichment WHERE photo_id = ? ORDER BY kind",
        photo_id,
    )
    photo["imagenet"] = _imagenet(corpus, photo_id)
    photo["categories"] = _rows(
        corpus,
        "SELECT model, ontology, category, mass FROM image_categories WHERE photo_id = ? "
        "ORDER BY model, ontology",
        photo_id,
    )
    photo["clusters"] = _rows(
        corpus, "SELECT run, cluster, distance FROM clusters WHERE photo_id = ? ORDER BY run", photo_id
    )
    photo["duplicate_group"] = duplicate_group(corpus, curation.get("dup_group"))
    photo["attribution"] = credit_line(
        title=photo["title"], owner=photo["owner"], license=photo["license"], page_url=photo["page_url"],
        source=photo["source"], source_id=photo["source_id"],
    )  # fmt: skip
    photo["creative_commons"] = is_creative_commons(photo["license"])
    photo["thumb"] = f"/image/{photo_id}/thumb"
    photo["full"] = f"/image/{photo_id}/full"
    return photo


def _imagenet(corpus: Corpus, photo_id: int) -> list[dict[str, Any]]:
    """Top-5 ImageNet classes per classifier: ``[{"model", "classes": [{"name", "prob"}...]}]``."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in corpus.conn.execute(
        "SELECT model, class_name, prob FROM image_labels WHERE photo_id = ? ORDER BY model, rank",
        (photo_id,),
    ):
        by_model.setdefault(r["model"], []).append({"name": r["class_name"], "prob": r["prob"]})
    return [{"model": m, "classes": c} for m, c in by_model.items()]


def duplicate_group(corpus: Corpus, group: int | None) -> list[dict[str, Any]]:
    """The members of a duplicate group, representative first, with how each was linked."""
    if group is None:
        return []
    return _rows(
        corpus,
        """SELECT c.photo_id AS id, c.duplicate_of, c.dup_method, f.width, f.height, p.title,
                  p.primary_label AS label
           FROM curation c JOIN photos p ON p.id = c.photo_id LEFT JOIN files f ON f.photo_id = c.photo_id
           WHERE c.dup_group = ? ORDER BY c.duplicate_of IS NOT NULL, c.photo_id LIMIT ?""",
        group,
        DUP_GROUP_SHOWN,
    )


def geo_point(lat: float | None, lon: float | None) -> dict[str, float] | None:
    """Where to draw the photo on the page's plain equirectangular SVG map (360 x 180 units): no map
    tiles, so the page makes no request to any other server."""
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return {"x": round(lon + 180, 3), "y": round(90 - lat, 3)}
