"""Query-time fusion of a semantic model's score with the ImageNet bridge's: ``search --bridge-weight``.

A semantic model learns from the corpus's own captions; the ImageNet bridge
(:mod:`photocorpus.learn.bridge`) knows the 1000 ImageNet classes from a million labelled photos.
They fail differently (the bridge has no word for "night", the tags rarely say "dog" when it is
obvious), so a blend ranks better than either, most of all on photos without captions
(docs/benchmarks.md, "Learning from web data"). The two scores live on different scales (a cosine, a
probability mass), so each is standardised over the corpus's photos before they are mixed:

    fused = (1 - w) * (s - mean_s) / std_s  +  w * (b - mean_b) / std_b

Both scores are linear in a per-query vector (the query embedding ``q``, the bridge's class weights
``c``), so the per-query mean and standard deviation over all photos follow exactly from the photos'
mean vector and covariance: ``mean = m . q`` and ``std^2 = q' C q``. Those moments are computed once
per loaded searcher (:class:`BridgeFusion`) and kept, so a query never scans the corpus for its
statistics. A photo the bridge has no logits for gets the bridge's mean (a zero z-score): no evidence
either way.

Exact top-k: with a flat index (every corpus up to ``[learn] exact_search_max`` photos, 200k by
default) every photo is scored, straight from the vectors the index already holds in memory: the
flat search itself is such a full scan, so fusion costs about the same again plus the bridge's n × 32
gather. With an IVF or HNSW index the candidates are the index's top ``K`` and the bridge's top ``K``,
all re-scored exactly; a photo in neither list scores at most ``(1-w) z(S_K) + w z(B_K)`` (``S_K``,
``B_K``: the ``K``-th scores), so ``K`` doubles until the ``k``-th fused score beats that bound. The
result is then exactly the fused top-k of the photos the index would return, i.e. as exact as the
semantic search itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from photocorpus.errors import ParameterError
from photocorpus.params import check_range

if TYPE_CHECKING:
    from photocorpus.learn.bridge import BridgeCache, ImageNetBridge
    from photocorpus.learn.index import PhotoIndex

CANDIDATES_MIN = 1000  # first candidate list per side on an approximate index
MOMENT_CHUNK = 50_000  # vectors read per pass when computing the moments


def check_bridge_weight(weight: float) -> float:
    """``weight`` if it is in [0, 1): 1 would drop the semantic model, which ``method="bridge"`` does."""
    check_range("bridge_weight", weight, 0.0, None)
    if not weight < 1.0:
        raise ParameterError(
            f"bridge_weight must be at least 0 and below 1 (1 would ignore the semantic model; use "
            f"method='bridge' for that), got {weight!r}"
        )
    return float(weight)


@dataclass(frozen=True)
class ScoreMoments:
    """Mean vector and covariance of the rows a linear score ``rows @ weights`` is taken over."""

    mean: np.ndarray  # (d,) float64
    cov: np.ndarray  # (d × d) float64
    count: int

    def mean_std(self, weights: np.ndarray) -> tuple[float, float]:
        """Mean and (population) standard deviation over the rows of ``rows @ weights``.

        A score that is the same for every photo gets std 1: its z-score is then 0 for all of them.
        """
        w = np.asarray(weights, dtype=np.float64)
        mean = float(self.mean @ w)
        var = float(w @ self.cov @ w)
        std = math.sqrt(var) if var > 1e-18 else 1.0
        return mean, std


def moments(chunks: Iterable[np.ndarray], dims: int) -> ScoreMoments:
    """Moments of the rows of an iterable of (n_i × dims) chunks, accumulated in float64."""
    total = np.zeros(dims, dtype=np.float64)
    gram = np.zeros((dims, dims), dtype=np.float64)
    count = 0
    for chunk in chunks:
        x = np.asarray(chunk, dtype=np.float64)
        total += x.sum(axis=0)
        gram += x.T @ x
        count += len(x)
    if count == 0:
        return ScoreMoments(np.zeros(dims), np.zeros((dims, dims)), 0)
    mean = total / count
    return ScoreMoments(mean, gram / count - np.outer(mean, mean), count)


def bridge_moments(cache: BridgeCache, classes: int) -> ScoreMoments:
    """Moments of the photos' sparse class distributions (the bridge score is ``probs @ weights``)."""
    from scipy import sparse

    def chunks() -> Iterator[sparse.csr_matrix]:
        for start in range(0, len(cache.ids), MOMENT_CHUNK):
            cls = cache.classes[start : start + MOMENT_CHUNK].astype(np.int64)
            prb = cache.probs[start : start + MOMENT_CHUNK].astype(np.float64)
            n, k = cls.shape
            rows = sparse.csr_matrix(
                (prb.ravel(), cls.ravel(), np.arange(0, n * k + 1, k)), shape=(n, classes)
            )
            yield rows

    total = np.zeros(classes, dtype=np.float64)
    gram = np.zeros((classes, classes), dtype=np.float64)
    count = 0
    for rows in chunks():
        total += np.asarray(rows.sum(axis=0)).ravel()
        gram += (rows.T @ rows).toarray()
        count += rows.shape[0]
    if count == 0:
        return ScoreMoments(np.zeros(classes), np.zeros((classes, classes)), 0)
    mean = total / count
    return ScoreMoments(mean, gram / count - np.outer(mean, mean), count)


def flat_vectors(index: PhotoIndex) -> tuple[np.ndarray, np.ndarray]:
    """(photo ids, vectors) of a flat index, the vectors a read-only view of the index's own memory.

    Why a view: the flat index already holds every vector in RAM; a copy would double the memory of
    a 200k-photo search for nothing. The view lives as long as ``index`` (the searcher keeps both).
    """
    import faiss

    flat = faiss.downcast_index(index.index.index)
    n, d = int(flat.ntotal), int(flat.d)
    vectors = faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d) if n else np.zeros((0, d), np.float32)
    vectors.flags.writeable = False
    return faiss.vector_to_array(index.index.id_map).astype(np.int64), vectors


def reconstruct(index: PhotoIndex, photo_ids: np.ndarray) -> np.ndarray:
    """The stored vectors of ``photo_ids`` (IVF: the float16-rounded ones it searches with)."""
    import faiss

    if index.info.kind == "ivf":
        ivf = faiss.extract_index_ivf(index.index)
        if ivf.direct_map.type != faiss.DirectMap.Hashtable:
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # ids -> stored codes, once
    ids = np.ascontiguousarray(photo_ids, dtype=np.int64)
    if not len(ids):
        return np.zeros((0, index.info.dims), np.float32)
    return np.asarray(index.index.reconstruct_batch(ids), dtype=np.float32)


class BridgeFusion:
    """The semantic index and the bridge of one searcher, with both scores' moments over the corpus."""

    def __init__(self, index: PhotoIndex, bridge: ImageNetBridge) -> None:
        self.index = index
        self.bridge = bridge
        self.flat: tuple[np.ndarray, np.ndarray] | None = None
        if index.info.kind == "flat":
            self.flat = flat_vectors(index)
            vectors = self.flat[1]
            self.semantic_moments = moments(
                (vectors[s : s + MOMENT_CHUNK] for s in range(0, len(vectors), MOMENT_CHUNK)),
                index.info.dims,
            )
        else:
            ids = index.ids
            self.semantic_moments = moments(
                (reconstruct(index, ids[s : s + MOMENT_CHUNK]) for s in range(0, len(ids), MOMENT_CHUNK)),
                index.info.dims,
            )
        self.bridge_moments = bridge_moments(bridge.cache, bridge.class_vecs.shape[0])

    def top(
        self, query: np.ndarray, class_weights: np.ndarray, weight: float, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(fused scores, photo ids) of the ``k`` best photos, best first (ties: smaller id first)."""
        q = np.asarray(query, dtype=np.float32)
        mean_s, std_s = self.semantic_moments.mean_std(q)
        mean_b, std_b = self.bridge_moments.mean_std(class_weights)
        a, c = (1.0 - weight) / std_s, weight / std_b

        def fused(ids: np.ndarray, semantic: np.ndarray) -> np.ndarray:
            bridge = self.bridge.scores_for(class_weights, ids).astype(np.float64)
            z_bridge = np.where(np.isnan(bridge), 0.0, bridge - mean_b)
            return a * (semantic.astype(np.float64) - mean_s) + c * z_bridge

        if self.flat is not None:
            ids, vectors = self.flat
            return _best(fused(ids, vectors @ q), ids, k)
        n = self.index.info.count
        bridge_all = self.bridge.cache.scores(class_weights)
        want = max(CANDIDATES_MIN, 8 * k)
        while True:
            s_top, id_top = self.index.search(q[None, :], min(want, n))
            keep = id_top[0] >= 0
            s_top, id_top = s_top[0][keep], id_top[0][keep]
            b_order = np.argsort(-bridge_all, kind="stable")[: min(want, len(bridge_all))]
            b_ids = self.bridge.cache.ids[b_order]
            b_ids = b_ids[np.isin(b_ids, self.index.ids, assume_unique=True)]
            candidates = np.union1d(id_top, b_ids)
            scores, ids = _best(fused(candidates, reconstruct(self.index, candidates) @ q), candidates, k)
            exhausted = len(id_top) >= n and len(b_order) >= len(bridge_all)
            if exhausted or not len(ids):
                return scores, ids
            s_floor = float(s_top[-1]) if len(s_top) else mean_s
            b_floor = float(bridge_all[b_order[-1]]) if len(b_order) else mean_b
            bound = a * (s_floor - mean_s) + c * max(b_floor - mean_b, 0.0)
            if len(ids) >= min(k, n) and scores[-1] >= bound:
                return scores, ids
            want *= 2


def _best(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(int(k), len(scores))
    if k <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.lexsort((ids[part], -scores[part]))]
    return scores[order].astype(np.float32), ids[order].astype(np.int64)
