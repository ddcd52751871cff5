"""Which photos a featurize run still has to do, whichever executor then does them.

The feature store, not the stage rows, is the truth about what is done: a photo counts as done for
a model only when it has a row in *every* set the model writes, so a set removed or restored by hand
is recomputed exactly where rows are missing. Stage rows only exclude permanent failures (a photo
that failed for a transient reason, :data:`photocorpus.reasons.TRANSIENT`, is tried again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from photocorpus import feature_store, reasons

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = ["ids_in_set", "pending_photo_ids"]

_ELIGIBLE_SQL = """
    SELECT f.photo_id FROM files f
    JOIN stages s ON s.photo_id = f.photo_id AND s.stage = 'fetch' AND s.status = 'done'
    WHERE NOT EXISTS (
        SELECT 1 FROM stages x
        WHERE x.photo_id = f.photo_id AND x.stage = ? AND x.status = 'failed'
          AND COALESCE(x.reason, '') NOT IN ({transient})
    )
    ORDER BY f.photo_id
"""


def ids_in_set(corpus: Corpus, name: str) -> np.ndarray:
    """Sorted unique photo ids with a row in feature set ``name`` (empty if there is no such set)."""
    try:
        return np.unique(feature_store.open_feature_set(corpus, name).photo_ids())
    except feature_store.FeatureSetNotFoundError:
        return np.zeros(0, dtype=np.int64)


def pending_photo_ids(corpus: Corpus, set_names: Sequence[str], stage: str) -> np.ndarray:
    """Sorted ids of fetched photos lacking a row in any of ``set_names`` (permanent failures excluded).

    The feature store, not the stage rows, is the truth about what is done: a set removed or restored
    by hand is recomputed exactly where rows are missing.
    """
    marks = ",".join("?" * len(reasons.TRANSIENT)) or "''"
    sql = _ELIGIBLE_SQL.format(transient=marks)
    rows = corpus.conn.execute(sql, (stage, *sorted(reasons.TRANSIENT)))
    eligible = np.fromiter((r[0] for r in rows), dtype=np.int64)
    have: np.ndarray | None = None
    for name in set_names:
        ids = ids_in_set(corpus, name)
        have = ids if have is None else np.intersect1d(have, ids, assume_unique=True)
    if have is None or have.size == 0:
        return eligible
    return np.setdiff1d(eligible, have, assume_unique=True)
