"""The grid's rows and counts for a :class:`~photocorpus.serve.photo_filters.GridQuery`.

One snapshot answers the page (count of the whole filter, the page's rows in the asked order) and
the facet counts the sidebar shows (labels, splits, duplicate states) for the same filter, so the
numbers on one page always agree with each other.
"""

from __future__ import annotations

from typing import Any

from photocorpus.corpus import Corpus
from photocorpus.serve.photo_filters import SORTS, GridQuery, photo_condition

FROM = "FROM photos p LEFT JOIN curation c ON c.photo_id = p.id"
FACET_LIMIT = 30


def grid_page(corpus: Corpus, query: GridQuery) -> dict[str, Any]:
    """``{"count", "page", "per_page", "photos": [...]}`` for the query (run inside a snapshot)."""
    condition, values = query.where()
    count = int(corpus.conn.execute(f"SELECT COUNT(*) FROM photos p WHERE {condition}", values).fetchone()[0])
    offset = (query.page - 1) * query.per_page
    rows = corpus.conn.execute(
        f"""SELECT p.id, p.primary_label, p.title, p.caption, p.source, p.license, p.owner,
                   COALESCE(p.taken_at, p.uploaded_at) AS date, c.split, c.dup_group, c.duplicate_of,
                   c.bot, c.quality_flags, c.exclusion
            {FROM} WHERE {condition} ORDER BY {SORTS[query.sort]} LIMIT ? OFFSET ?""",
        [*values, query.per_page, offset],
    ).fetchall()
    photos = [photo_summary(r) for r in rows]
    return {"count": count, "page": query.page, "per_page": query.per_page, "photos": photos}


def photo_summary(r: Any) -> dict[str, Any]:
    """One grid cell's facts (all user text goes out as JSON strings or autoescaped text)."""
    import json

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
