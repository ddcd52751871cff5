""" "More like this": a photo's nearest neighbours by cosine similarity in a stored feature set.

Why not :func:`photocorpus.search` with the photo's file as the example: that re-computes the
features of an image whose features are already stored, loading the CNN per request. Here the
photo's own stored row is the query.

Two ways to answer, picked by the set's size:

* up to :data:`EXACT_MAX_ROWS` rows, an exact product over a normalised float32 matrix held by the
  app (20,000 x 1,280 floats: a few milliseconds);
* above, a faiss IVF index over the L2-normalised rows (:func:`photocorpus.learn.index.ensure_index`,
  the index ``photocorpus search`` uses, calibrated at build time to recall@10 >= 0.97), saved in
  ``models/feature-index/<set>.neighbours/`` and so built once per feature-set version (about 10 s
  for 100,000 x 1,280 on one core) and then loaded by every later server and worker. Why: the exact
  product over 100,000 x 1,280 costs ~56 ms of CPU per photo page, which made "more like this" the
  largest single cost of ``serve`` under load; an IVF query reads a few cells, well under 1 ms.
  The index is updated incrementally when ``featurize`` adds rows (the set's row count changes).
  Approximate: a neighbour list may miss a few of the exact top ones; its scores are exact cosines
  up to float16 storage.
"""

from __future__ import annotations

import fcntl
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from photocorpus import feature_store
from photocorpus.corpus import Corpus

# The feature sets "more like this" prefers, best first; otherwise the first non-map set registered.
PREFERRED_SETS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
# Above this many rows a set is searched through its saved IVF index instead of an exact product.
EXACT_MAX_ROWS = 20_000
NEIGHBOUR_INDEX_SUFFIX = ".neighbours"
# An IVF query scans this many times the asked-for count in vectors at least (large k, filters).
IVF_SCAN_FACTOR = 4


@dataclass
class _Exact:
    rows: int
    ids: np.ndarray
    matrix: np.ndarray  # L2-normalised float32
    row_of: dict[int, int]


@dataclass
class _Indexed:
    rows: int
    features: feature_store.FeatureSet
    matrix: np.ndarray  # the stored rows (a memmap for a compacted set), read one row per query
    sorted_ids: np.ndarray
    order: np.ndarray  # row of each id in sorted_ids
    index: Any  # photocorpus.learn.index.PhotoIndex
    nprobe: int
    nlist: int

    def row_of(self, photo_id: int) -> int | None:
        pos = int(np.searchsorted(self.sorted_ids, photo_id))
        if pos < len(self.sorted_ids) and int(self.sorted_ids[pos]) == photo_id:
            return int(self.order[pos])
        return None


def neighbour_index_folder(corpus: Corpus, name: str) -> Path:
    """Where a set's "more like this" index is saved (beside ``photocorpus search``'s feature indexes,
    in its own folder because it is always IVF while search's is exact up to 200,000 photos)."""
    from photocorpus import corpus_paths
    from photocorpus.learn import registry
    from photocorpus.learn.search import FEATURE_INDEX_DIR

    safe = corpus_paths.safe_component(name) + NEIGHBOUR_INDEX_SUFFIX
    return corpus.root / registry.MODELS_DIR / FEATURE_INDEX_DIR / safe


class NeighbourIndex:
    """Per feature set: an exact matrix or a loaded IVF index, reloaded when the set's rows change.

    ``exact_max_rows`` picks between the two (tests lower it to reach the IVF path on a small set)."""

    def __init__(self, exact_max_rows: int = EXACT_MAX_ROWS) -> None:
        self.exact_max_rows = exact_max_rows
        self._sets: dict[str, _Exact | _Indexed] = {}
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

    def warm(self, corpus: Corpus) -> None:
        """Load (or build, the first time on a large set) the default set's index now, so that the
        first photo page does not wait for it: the server calls this in a thread as it starts."""
        name = self.default_set(corpus)
        if name is not None:
            self._load(corpus, name)

    def _load(self, corpus: Corpus, name: str) -> _Exact | _Indexed:
        fs = feature_store.open_feature_set(corpus, name)
        with self._lock:  # one thread loads or builds; the others wait for it rather than repeat it
            loaded = self._sets.get(name)
            if loaded is not None and loaded.rows == fs.rows:
                return loaded
            if fs.rows > self.exact_max_rows:
                loaded = self._indexed(corpus, fs)
            else:
                ids = fs.photo_ids()
                row_of = {int(p): i for i, p in enumerate(ids.tolist())}
                loaded = _Exact(fs.rows, ids, fs.normalized(), row_of)
            self._sets[name] = loaded
            return loaded

    def _indexed(self, corpus: Corpus, fs: feature_store.FeatureSet) -> _Indexed:
        import faiss

        from photocorpus.learn.index import build_index, ensure_index
        from photocorpus.learn.search import feature_index_source

        source = feature_index_source(corpus, fs.name)
        seed = corpus.settings.learn.seed
        folder = neighbour_index_folder(corpus, fs.name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # one builder at a time: the other workers of the server wait, then load what it saved
            with open(folder / "build.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                index, _action = ensure_index(folder, source, setting="ivf", seed=seed)
        except OSError:  # a corpus we may read but not write: build it for this process only
            ids = np.unique(source.photo_ids())
            index = build_index(source.embed(ids), ids, kind="ivf", seed=seed)
        ids = fs.photo_ids()
        order = np.argsort(ids, kind="stable")
        return _Indexed(
            rows=fs.rows,
            features=fs,
            matrix=fs.matrix(),
            sorted_ids=ids[order],
            order=order,
            index=index,
            nprobe=int(index.info.params.get("nprobe", 1)),
            nlist=int(faiss.extract_index_ivf(index.index).nlist),
        )

    def neighbours(
        self, corpus: Corpus, photo_id: int, k: int = 12, features: str | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` photos most similar to ``photo_id`` (itself left out), best first, with scores;
        empty when there is no feature set or the photo has no row in it."""
        name = features or self.default_set(corpus)
        if name is None:
            return []
        loaded = self._load(corpus, name)
        if isinstance(loaded, _Indexed):
            return _indexed_neighbours(loaded, int(photo_id), k)
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


def _indexed_neighbours(loaded: _Indexed, photo_id: int, k: int) -> list[tuple[int, float]]:
    """Neighbours through the IVF index: the photo's stored row as the query, itself dropped. A large
    ``k`` (a filtered "like" search asks for up to 10,000) probes more cells, so the cells scanned
    hold about :data:`IVF_SCAN_FACTOR` x k vectors and the answer is not cut short by the cells."""
    import faiss

    row = loaded.row_of(photo_id)
    k = min(k, loaded.rows - 1)
    if row is None or k <= 0:
        return []
    vector = np.asarray(loaded.matrix[row], dtype=np.float32)
    query = (vector / max(float(np.linalg.norm(vector)), 1e-12))[None, :]
    per_cell = loaded.rows / max(loaded.nlist, 1)
    nprobe = min(loaded.nlist, max(loaded.nprobe, math.ceil(IVF_SCAN_FACTOR * (k + 1) / per_cell)))
    scores, ids = loaded.index.index.search(query, k + 1, params=faiss.SearchParametersIVF(nprobe=nprobe))
    found = [
        (int(pid), float(score))
        for pid, score in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
        if pid >= 0 and pid != photo_id
    ]
    return found[:k]
