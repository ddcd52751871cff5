"""Each photo's provenance, read from the catalog: what fetch and export stamp into JPEGs.

The stamp itself (:class:`~photocorpus.provenance.Provenance`, :func:`~photocorpus.provenance.
embed_provenance`) knows no catalog, so that the render workers that apply it import none; this is the
driver's half. Fetch's drivers (the local loop and the Ray driver) read a page of photos at a time
here and hand each photo's stamp to the renderer with its bytes; export reads a batch ahead of the
files it writes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from photocorpus.provenance import ALL_SOURCES, Provenance, stamped_sources

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus


def load_provenance(
    corpus: Corpus, photo_ids: Iterable[int], sources: Collection[str] = (ALL_SOURCES,)
) -> dict[int, Provenance]:
    """Each photo's provenance from the catalog (photos of ``sources`` only; ``"*"`` is every source).

    The description is the source's text with HTML stripped where the harvest kept that form; views
    are the enrichment's count (``photo_social``) where there is one, else the harvest's; the image URL
    is the stored file's origin when it is an http(s) URL.
    """
    ids = list(photo_ids)
    found: dict[int, Provenance] = {}
    if not ids or not sources:
        return found
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = corpus.conn.execute(
            f"""SELECT p.id, p.source, p.source_id, p.title, p.caption, p.tags, p.hashtags, p.owner,
                       p.owner_id, p.lat, p.lon, p.geo_accuracy, p.license, p.taken_at, p.uploaded_at,
                       p.page_url, p.extra, s.views AS social_views, f.origin
                FROM photos p
                LEFT JOIN photo_social s ON s.photo_id = p.id
                LEFT JOIN files f ON f.photo_id = p.id
                WHERE p.id IN ({marks})""",
            chunk,
        ).fetchall()
        for r in rows:
            if stamped_sources(sources, r["source"]):
                found[int(r["id"])] = _from_row(r)
    return found


def _from_row(r: Any) -> Provenance:
    extra = _json(r["extra"], {})
    tags = _json(r["tags"], []) or _json(r["hashtags"], [])
    views = r["social_views"] if r["social_views"] is not None else extra.get("views")
    origin = str(r["origin"] or "")
    return Provenance(
        source=r["source"],
        source_id=r["source_id"],
        page_url=r["page_url"],
        image_url=origin if origin.startswith(("http://", "https://")) else None,
        owner=r["owner"],
        owner_id=r["owner_id"],
        title=r["title"],
        description=extra.get("description_text") or r["caption"],
        tags=[str(t) for t in tags] if isinstance(tags, list) else [],
        license=r["license"],
        lat=r["lat"],
        lon=r["lon"],
        geo_accuracy=r["geo_accuracy"],
        taken_at=r["taken_at"],
        uploaded_at=r["uploaded_at"],
        views=views if isinstance(views, int) and not isinstance(views, bool) else None,
    )


def _json(text: str | None, default: Any) -> Any:
    try:
        value = json.loads(text or "null")
    except ValueError:
        return default
    return default if value is None or type(value) is not type(default) else value
