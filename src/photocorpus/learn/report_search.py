"""The explore report's search box, filled from the corpus's newest semantic model.

A report is a static page: it cannot run MiniLM or a faiss index. So, when a semantic model exists,
the queries a user is likely to type are answered at build time: the paper's 24 InstaCities1M
queries, the corpus's labels, and its most frequent tags and hashtags. Each is ranked by the same
:class:`~photocorpus.learn.search.Searcher` as ``photocorpus search``, so the box and the command
agree. Without a semantic model there is no box (the ImageNet bridge is for the command line, where
new text can be embedded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from photocorpus.learn.instacities_queries import QUERIES
from photocorpus.learn.search import Searcher, has_semantic_model

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.search_index import SearchIndex

TOP_TERMS = 30  # most frequent tags/hashtags offered as queries
MAX_LABELS = 50
RESULTS_PER_QUERY = 100


def report_queries(corpus: Corpus, *, top_terms: int = TOP_TERMS) -> list[str]:
    """Queries for the box: the paper's list, then labels, then frequent tags (no repeats, in order)."""
    conn = corpus.conn
    labels = [
        r[0]
        for r in conn.execute(
            "SELECT label FROM photo_labels GROUP BY label ORDER BY COUNT(*) DESC, label LIMIT ?",
            (MAX_LABELS,),
        )
    ]
    # Counted in SQL: at a million photos the tag list is tens of millions of values, which Python
    # need never see.
    frequent = [
        r[0]
        for r in conn.execute(
            """SELECT term FROM (
                   SELECT lower(j.value) AS term FROM photos p, json_each(
                       CASE WHEN json_valid(p.tags) THEN p.tags ELSE '[]' END) j
                   WHERE j.type = 'text' AND length(j.value) BETWEEN 2 AND 40
                   UNION ALL
                   SELECT lower(j.value) FROM photos p, json_each(
                       CASE WHEN json_valid(p.hashtags) THEN p.hashtags ELSE '[]' END) j
                   WHERE j.type = 'text' AND length(j.value) BETWEEN 2 AND 40)
               GROUP BY term ORDER BY COUNT(*) DESC, term LIMIT ?""",
            (top_terms,),
        )
    ]
    seen: set[str] = set()
    out: list[str] = []
    for query in [q for _, q in QUERIES] + labels + frequent:
        key = query.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append(query.strip())
    return out


def report_search_index(
    corpus: Corpus, queries: list[str] | None = None, *, k: int = RESULTS_PER_QUERY
) -> SearchIndex | None:
    """Precomputed rankings for the report's search box, or ``None`` when no semantic model exists."""
    from photocorpus.errors import PhotocorpusError
    from photocorpus.search_index import SearchIndex

    if not has_semantic_model(corpus):
        return None
    searcher = Searcher(corpus, method="semantic")
    ranked: dict[str, list[int]] = {}
    for query in queries if queries is not None else report_queries(corpus):
        try:
            hits = searcher.search_text(query, k)
        except PhotocorpusError:  # a tag the query grammar refuses (e.g. only "-"): skip it
            continue
        ranked[query] = [h.photo_id for h in hits]
    return SearchIndex(model=searcher.method, queries=ranked)
