"""The grid's photo ids in page order for a filter and a sort, kept between requests.

Why ids are kept and not SQL per page: at 100,000 photos the grid's filters mostly select large
parts of the corpus (``excluded=1``, ``dup=grouped``, ``has_caption``), and two of its sorts are
computed per photo (``score``: the top ImageNet probability; ``size``: width x height), so one page
cost 60 to 170 ms of SQLite CPU for its count and its sort, every time. Here the expensive parts are
made once per catalog stamp (:mod:`.catalog_stamps`) and reused by every client:

- the corpus in each sort order (an array of ids; no decision changes a sort key);
- each filter *term* as a sorted id array (``label=dog``; ``stage``/``status``/``reason`` is one
  term), stamped by the decisions that can change that term only;
- the ids of a whole filter in a sort order: the order array masked by its terms (under a
  millisecond with numpy), so a combination of two cached terms is cheap too.

A page is then a slice of an array and its rows are read by id, fresh, so what a row shows (its
split, its exclusion) is always the catalog's current state.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from photocorpus.corpus import Corpus
from photocorpus.serve.catalog_stamps import Stamps
from photocorpus.serve.photo_filters import SORTS, photo_condition
from photocorpus.serve.stamped_cache import StampedCache

# What no stamp tracks (a stage committing while the app is open: curate's groups and flags,
# featurize's labels, new photos) shows within this many seconds.
GRID_TTL_S = 15.0
# The sort orders change only as photos are added, fetched (size) or featurized (score).
ORDER_TTL_S = 60.0
STAGE_TERM = ("stage", "status", "reason")
# Terms that are exactly the other photos of another term (photo_filters writes "NOT" + the same
# set): both answered by one query, and after a decision the smaller side is the one read (the
# photos not reviewed are 99,958 of 100,000; the reviewed ones are read in under a millisecond).
COMPLEMENTS = {
    ("bot", "0"): ("bot", "1"),
    ("excluded", "0"): ("excluded", "1"),
    ("reviewed", "0"): ("reviewed", "1"),
    ("has_caption", "0"): ("has_caption", "1"),
    ("dup", "unique"): ("dup", "grouped"),
}


def filter_terms(filters: Mapping[str, str]) -> list[dict[str, str]]:
    """The filters split into independent terms, each one SQL condition of :func:`photo_condition`."""
    terms = [{k: filters[k]} for k in sorted(filters) if k not in STAGE_TERM]
    stage = {k: filters[k] for k in STAGE_TERM if k in filters}
    if stage:
        terms.append(stage)
    return terms


def compact(ids: np.ndarray) -> np.ndarray:
    """``ids`` as 32-bit integers when they fit (always, for ids an import numbered): a kept id list
    of the whole corpus is then 400 KB, and the cache holds up to 256 of them."""
    if ids.size and (int(ids.max()) >= 2**31 or int(ids.min()) < -(2**31)):
        return ids
    return ids.astype(np.int32)


def _ids(corpus: Corpus, sql: str, values: list[object]) -> np.ndarray:
    cursor = corpus.conn.execute(sql, values)
    return compact(np.fromiter((r[0] for r in cursor), dtype=np.int64))


def ordered_ids(corpus: Corpus, sort: str) -> np.ndarray:
    """Every photo id in the sort's order (the SQL of :data:`SORTS`, so the order is the same)."""
    return _ids(corpus, f"SELECT p.id FROM photos p ORDER BY {SORTS[sort]}", [])


def term_ids(corpus: Corpus, term: Mapping[str, str]) -> np.ndarray:
    """The sorted ids of the photos one filter term selects."""
    condition, values = photo_condition(term)
    return _ids(corpus, f"SELECT p.id FROM photos p WHERE {condition} ORDER BY p.id", values)


def keep_only(order: np.ndarray, selected: list[np.ndarray]) -> np.ndarray:
    """``order`` without the ids missing from any of the ``selected`` arrays (order kept)."""
    if order.size == 0:
        return order
    top = int(order.max()) + 1
    keep = np.ones(order.size, dtype=bool)
    for ids in selected:
        member = np.zeros(top, dtype=bool)
        member[ids[(ids >= 0) & (ids < top)]] = True
        keep &= member[order]
    return order[keep]


def matching_ids(
    corpus: Corpus, filters: Mapping[str, str], sort: str, cache: StampedCache, stamps: Stamps
) -> np.ndarray:
    """The ids the filters select, in the sort's order (call inside a read snapshot)."""
    order = cache.get(("order", sort), (), lambda: ordered_ids(corpus, sort), ORDER_TTL_S)
    if not filters:
        return order
    terms = filter_terms(filters)

    def term(t: dict[str, str]) -> np.ndarray:
        items = tuple(sorted(t.items()))
        return cache.get(("term", items), stamps.for_filters(t), lambda: make_term(t, items), GRID_TTL_S)

    def make_term(t: dict[str, str], items: tuple[tuple[str, str], ...]) -> np.ndarray:
        other = COMPLEMENTS.get(items[0]) if len(items) == 1 else None
        if other is None:
            return term_ids(corpus, t)
        every = cache.get(("order", "id"), (), lambda: ordered_ids(corpus, "id"), ORDER_TTL_S)
        return np.setdiff1d(every, term(dict([other])), assume_unique=True)

    key = ("matching", sort, tuple(sorted(filters.items())))
    stamp = stamps.for_filters(filters)
    return cache.get(key, stamp, lambda: keep_only(order, [term(t) for t in terms]), GRID_TTL_S)
