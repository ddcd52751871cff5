"""The grid's rows and counts for a :class:`~photocorpus.serve.photo_filters.GridQuery`.

One snapshot answers the page (count of the whole filter, the page's rows in the asked order) and
the facet counts the sidebar shows (labels, splits, duplicate states) for the same filter, so the
numbers on one page always agree with each other.
"""

from __future__ import annotations

import json
from typing import Any

from photocorpus.corpus import Corpus
from photocorpus.serve.catalog_stamps import Stamps
from photocorpus.serve.grid_ids import matching_ids
from photocorpus.serve.photo_filters import GridQuery, photo_condition
from photocorpus.serve.stamped_cache import StampedCache

FROM = "FROM photos p LEFT JOIN curation c ON c.photo_id = p.id"
FACET_LIMIT = 30


def grid_page(corpus: Corpus, query: GridQuery, cache: StampedCache | None = None) -> dict[str, Any]:
    """``{"count", "page", "per_page", "photos": [...]}`` for the query (run inside a snapshot).

    The count and the page's ids come from :func:`~photocorpus.serve.grid_ids.matching_ids` (kept in
    ``cache`` per catalog stamp; a fresh cache computes them now); the rows are read by id, so each
    shows the catalog as it is now."""
    ids = matching_ids(corpus, query.filters, query.sort, cache or StampedCache(), Stamps(corpus))
    offset = (query.page - 1) * query.per_page
    page_ids = [int(i) for i in ids[offset : offset + query.per_page]]
    rows = corpus.conn.execute(
        f"""SELECT p.id, p.primary_label, p.title, p.caption, p.source, p.license, p.owner,
                   COALESCE(p.taken_at, p.uploaded_at) AS date, c.split, c.dup_group, c.duplicate_of,
                   c.bot, c.quality_flags, c.exclusion
            {FROM} WHERE p.id IN (SELECT value FROM json_each(?))""",
        [json.dumps(page_ids)],
    ).fetchall()
    by_id = {int(r["id"]): r for r in rows}
    photos = [photo_summary(by_id[i]) for i in page_ids if i in by_id]
    return {"count": int(ids.size), "page": query.page, "per_page": query.per_page, "photos": photos}


def photo_summary(r: Any) -> dict[str, Any]:
    """One grid cell's facts (all user text goes out as JSON strings or autoescaped text)."""
    return {
        "id": int(r["id"]),
        "label": r["primary_label"],
        "title": r["title"] or "",
        "caption": (r["caption"] or "")[:300],
        "source": r["source"],
        "license": r["license"],
        "owner": r["owner"],
        "date": r["date"],
        "split": r["split"],
        "dup_group": r["dup_group"],
        "duplicate_of": r["duplicate_of"],
        "bot": bool(r["bot"]),
        "quality_flags": json.loads(r["quality_flags"] or "[]"),
        "exclusion": r["exclusion"],
        "thumb": f"/image/{int(r['id'])}/thumb",
    }


def facet_counts(corpus: Corpus, query: GridQuery) -> dict[str, list[tuple[str, int]]]:
    """Counts by label, split, source and duplicate state within the current filter (each facet
    counted without its own filter, so the other choices stay visible, as in Datasette)."""
    out: dict[str, list[tuple[str, int]]] = {}
    facets = {
        "label": "p.primary_label",
        "split": "COALESCE(c.split, 'none')",
        "source": "p.source",
        "dup": (
            "CASE WHEN c.dup_group IS NULL THEN 'unique' WHEN c.dup_group = p.id THEN 'representative' "
            "ELSE 'duplicate' END"
        ),
    }
    for name, expression in facets.items():
        others = {k: v for k, v in query.filters.items() if k != name}
        condition, values = photo_condition(others)
        rows = corpus.conn.execute(
            f"SELECT {expression} AS v, COUNT(*) AS n {FROM} WHERE {condition} GROUP BY v ORDER BY n DESC, v "
            f"LIMIT {FACET_LIMIT}",
            values,
        ).fetchall()
        out[name] = [(str(r["v"]), int(r["n"])) for r in rows]
    return out


def filter_choices(corpus: Corpus) -> dict[str, list[str]]:
    """The values the filter form offers as lists (stages, reasons, flags, licences, runs...)."""
    conn = corpus.conn

    def column(sql: str) -> list[str]:
        return [str(r[0]) for r in conn.execute(sql) if r[0] is not None]

    return {
        "stage": column("SELECT DISTINCT stage FROM stages ORDER BY stage"),
        "reason": column(
            "SELECT DISTINCT reason FROM stages WHERE reason IS NOT NULL ORDER BY reason LIMIT 200"
        ),
        "flag": column(
            "SELECT DISTINCT j.value FROM curation c, json_each(COALESCE(c.quality_flags, '[]')) j ORDER BY 1"
        ),
        "license": column(
            "SELECT DISTINCT license FROM photos WHERE license IS NOT NULL ORDER BY 1 LIMIT 100"
        ),
        "cluster_run": column("SELECT run FROM cluster_runs ORDER BY run"),
        "category": column("SELECT DISTINCT category FROM image_categories ORDER BY 1 LIMIT 200"),
        "source": column("SELECT DISTINCT source FROM photos ORDER BY 1"),
    }
