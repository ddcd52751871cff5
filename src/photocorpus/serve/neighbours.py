""" "More like this": a photo's nearest neighbours by cosine similarity in a stored feature set.

Why not :func:`photocorpus.search` with the photo's file as the example: that re-computes the
features of an image whose features are already stored, loading the CNN per request. Here the set's
rows are read once per (set, row count) into a normalised float32 matrix held by the app; a query
is one matrix-vector product (100,000 x 1,280 floats: tens of milliseconds) and an argpartition.
The matrix is rebuilt when ``featurize`` has added rows (the registry's row count changed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from photocorpus import feature_store
from photocorpus.corpus import Corpus

# The feature sets "more like this" prefers, best first; otherwise the first non-map set registered.
PREFERRED_SETS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


@dataclass
class _Loaded:
    rows: int
    ids: np.ndarray
    matrix: np.ndarray  # L2-normalised float32
    row_of: dict[int, int]


class NeighbourIndex:
    """Normalised feature matrices kept in memory, one per feature set, reloaded when a set grows."""

    def __init__(self) -> None:
        self._sets: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    @staticmethod
    def default_set(corpus: Corpus) -> str | None:
        names = [
            f["name"]
            for f in corpus.feature_sets()
            if ".map-" not in f["name"] and not f["name"].endswith(".logits") and f["rows"] > 0
        ]
        for name in PREFERRED_SETS:
            if name in names:
                return name
        return names[0] if names else None

    def _load(self, corpus: Corpus, name: str) -> _Loaded:
        fs = feature_store.open_feature_set(corpus, name)
        with self._lock:
            loaded = self._sets.get(name)
            if loaded is not None and loaded.rows == fs.rows:
                return loaded
            ids = fs.photo_ids()
            loaded = _Loaded(fs.rows, ids, fs.normalized(), {int(p): i for i, p in enumerate(ids.tolist())})
            self._sets[name] = loaded
            return loaded

    def neighbours(
        self, corpus: Corpus, photo_id: int, k: int = 12, features: str | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` photos most similar to ``photo_id`` (itself left out), best first, with scores;
        empty when there is no feature set or the photo has no row in it."""
        name = features or self.default_set(corpus)
        if name is None:
            return []
        loaded = self._load(corpus, name)
        row = loaded.row_of.get(int(photo_id))
        if row is None:
            return []
        scores = loaded.matrix @ loaded.matrix[row]
        scores[row] = -np.inf
        k = min(k, len(scores) - 1)
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(loaded.ids[i]), float(scores[i])) for i in top]
