"""2-D maps of a feature set: PCA to 50 dims, then openTSNE, UMAP or PCA alone, stored for reuse.

Why this path and not scikit-learn's TSNE: openTSNE's FFT-interpolated gradient is O(n) per iteration
and multi-threaded, where scikit-learn's Barnes-Hut is O(n log n) and mostly single-threaded. On top
of openTSNE's defaults we save time in two places (``benchmarks/tsne.py`` measures the sum against
scikit-learn on the same 30k x 1280 features):

* the k-nearest neighbours that t-SNE's affinities need come from faiss (exact below
  :data:`EXACT_KNN_MAX_ROWS` rows, HNSW above) instead of Annoy: one BLAS pass on the 50-d PCA rows;
* fewer optimisation steps: 250 early-exaggeration steps and :data:`TSNE_ITERATIONS` normal ones, with
  openTSNE's automatic learning rate (n / 12), which converges in far fewer steps than the fixed
  learning rate of the original algorithm. Trustworthiness (what a reader of the map relies on: that
  neighbours on the map are neighbours in feature space) stays within 0.01 of scikit-learn's.

Every random step takes a seed, so the same rows give the same map. A map is stored as a feature set
named ``<features>.map-<method>`` (2 float32 columns), registered with everything it was computed
from (method, parameters, seed, the source set's model id and row count, a digest of the photo ids),
and reused while those match; otherwise it is recomputed and replaces the old one.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import feature_store
from photocorpus.explore.errors import ExploreError, ExploreInterrupted

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = [
    "EXACT_KNN_MAX_ROWS",
    "METHODS",
    "PCA_DIMS",
    "TSNE_ITERATIONS",
    "MapParams",
    "StoredMap",
    "embed_2d",
    "ensure_map",
    "ids_digest",
    "map_set_name",
    "nearest_neighbors",
    "reduce_pca",
    "trustworthiness_on_sample",
]

METHODS = ("tsne", "umap", "pca")
PCA_DIMS = 50
TSNE_ITERATIONS = 300  # after 250 early-exaggeration steps; see the module docstring
FFT_MIN_ROWS = 10_000  # openTSNE's own switch point between Barnes-Hut and FFT gradients
EXACT_KNN_MAX_ROWS = 60_000  # above this, exact kNN's n^2 cost exceeds HNSW's by far on 2 cores
PCA_FIT_MAX_ROWS = 25_000  # the PCA basis is fitted on a seeded sample this large, then applied to all
TRUST_SAMPLE = 2_000
TRUST_NEIGHBORS = 10

Progress = Callable[[int], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class MapParams:
    """How a map is computed; all of it is stored with the map and must match for a reuse."""

    method: str = "tsne"
    seed: int = 0
    pca_dims: int = PCA_DIMS
    normalize: bool = True  # L2-normalise rows first: cosine geometry, right for CNN embeddings
    perplexity: float = 30.0
    early_exaggeration_iter: int = 250
    tsne_iter: int = TSNE_ITERATIONS
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ExploreError(f"unknown map method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.pca_dims < 2:
            raise ExploreError(f"pca_dims must be at least 2, got {self.pca_dims}")
        if self.perplexity <= 1:
            raise ExploreError(f"perplexity must be above 1, got {self.perplexity}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ids_digest(photo_ids: np.ndarray) -> str:
    """A digest of the (ordered) photo ids a map or clustering was computed for."""
    return hashlib.sha256(np.ascontiguousarray(photo_ids, dtype=np.int64).tobytes()).hexdigest()


def map_set_name(features: str, method: str) -> str:
    """Feature set that stores a 2-D map: ``<features>.map-<method>``."""
    return f"{features}.map-{method}"


# ----------------------------------------------------------------------------------------- numerics
def _threads() -> int:
    from photocorpus.worker_counts import default_workers

    return default_workers()


def reduce_pca(x: np.ndarray, dims: int = PCA_DIMS, *, seed: int = 0, normalize: bool = True) -> np.ndarray:
    """Rows -> float32 (n, min(dims, ...)) principal components, fitted on a seeded sample.

    Works block by block, so a float16 memmap of any size is never copied whole into float32. With
    ``normalize`` rows are L2-normalised first. Fewer rows or columns than ``dims`` give fewer dims.
    """
    from sklearn.decomposition import PCA

    n, d = x.shape
    if n < 2:
        raise ExploreError(f"a map needs at least 2 photos, got {n}")
    dims = max(1, min(dims, n - 1, d))
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(n, PCA_FIT_MAX_ROWS, replace=False)) if n > PCA_FIT_MAX_ROWS else None
    sample = _rows_f32(x, fit_rows, normalize)
    pca = PCA(n_components=dims, svd_solver="randomized" if dims < min(sample.shape) // 2 else "full",
              random_state=seed).fit(sample)  # fmt: skip
    if fit_rows is None:
        return pca.transform(sample).astype(np.float32)
    out = np.empty((n, dims), dtype=np.float32)
    step = 8192
    for start in range(0, n, step):
        block = _rows_f32(x, np.arange(start, min(n, start + step)), normalize)
        out[start : start + len(block)] = pca.transform(block)
    return out


def _rows_f32(x: np.ndarray, rows: np.ndarray | None, normalize: bool) -> np.ndarray:
    block = np.asarray(x if rows is None else x[rows], dtype=np.float32)
    if normalize:
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        block = block / np.maximum(norms, 1e-12)
    return block


def nearest_neighbors(z: np.ndarray, k: int, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of every row: ``(indices int64, euclidean distances float32)``.

    faiss: exact (one BLAS pass) up to :data:`EXACT_KNN_MAX_ROWS`, HNSW (M=32, efSearch=2k) above.
    """
    import faiss

    faiss.omp_set_num_threads(threads or _threads())
    z = np.ascontiguousarray(z, dtype=np.float32)
    n, d = z.shape
    k = min(k, n - 1)
    if n <= EXACT_KNN_MAX_ROWS:
        index: Any = faiss.IndexFlatL2(d)
    else:
        index = faiss.IndexHNSWFlat(d, 32)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(2 * (k + 1), 64)
    index.add(z)
    dist2, idx = index.search(z, k + 1)
    # Drop each row itself (normally the first hit; with exact duplicates it may come later).
    own = idx == np.arange(n)[:, None]
    keep = np.where(own.any(axis=1, keepdims=True), ~own, np.arange(k + 1)[None, :] < k)
    idx = idx[keep].reshape(n, k)
    dist = np.sqrt(np.maximum(dist2[keep].reshape(n, k), 0.0)).astype(np.float32)
    return idx.astype(np.int64), dist


def embed_2d(
    z: np.ndarray,
    params: MapParams,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    stop: StopCheck | None = None,
) -> np.ndarray:
    """2-D coordinates (float32, n x 2) of PCA-reduced rows ``z`` by ``params.method``.

    ``progress(n)`` is called with optimisation steps done (t-SNE: out of the total of both phases);
    ``stop()`` is polled every 25 steps and raises :class:`ExploreInterrupted` when true.
    """
    threads = threads or _threads()
    z = np.ascontiguousarray(z, dtype=np.float32)
    n = len(z)
    if n < 4:
        raise ExploreError(f"a map needs at least 4 photos, got {n}")
    if params.method == "pca":
        coords = z[:, :2] if z.shape[1] >= 2 else np.hstack([z, np.zeros((n, 1), np.float32)])
        return np.ascontiguousarray(coords, dtype=np.float32)
    if params.method == "umap":
        return _umap(z, params)
    return _tsne(z, params, threads, progress, stop)


def _tsne(
    z: np.ndarray, params: MapParams, threads: int, progress: Progress | None, stop: StopCheck | None
) -> np.ndarray:
    from openTSNE import TSNEEmbedding, affinity, initialization
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = len(z)
    if n < FFT_MIN_ROWS:
        # Small maps take a second or two on one thread; more threads only add synchronisation, which
        # costs far more than it saves when other processes keep the cores busy.
        threads = 1
    perplexity = min(params.perplexity, (n - 1) / 3.0)
    k = min(n - 1, int(3 * perplexity))
    idx, dist = nearest_neighbors(z, k, threads=threads)
    affinities = affinity.PerplexityBasedNN(
        perplexity=perplexity,
        knn_index=PrecomputedNeighbors(idx, dist),
        n_jobs=threads,
        random_state=params.seed,
    )
    init = initialization.pca(z, random_state=params.seed)
    every = 25

    def callback(iteration: int, error: float, embedding: np.ndarray) -> bool:
        if progress is not None:
            progress(every)
        return bool(stop and stop())

    emb = TSNEEmbedding(
        init,
        affinities,
        # FFT interpolation is O(n) but has a fixed cost per step that Barnes-Hut beats on small maps.
        negative_gradient_method="fft" if n >= FFT_MIN_ROWS else "bh",
        n_jobs=threads,
        random_state=params.seed,
        callbacks=[callback],
        callbacks_every_iters=every,
    )
    from openTSNE.tsne import OptimizationInterrupt

    try:
        emb = emb.optimize(params.early_exaggeration_iter, exaggeration=12, momentum=0.5)
        emb = emb.optimize(params.tsne_iter, momentum=0.8)
    except OptimizationInterrupt:
        raise ExploreInterrupted("t-SNE interrupted; nothing was stored") from None
    return np.ascontiguousarray(np.asarray(emb), dtype=np.float32)


def _umap(z: np.ndarray, params: MapParams) -> np.ndarray:
    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": the seed wins, on purpose
        reducer = umap.UMAP(
            n_neighbors=min(params.umap_neighbors, len(z) - 1),
            min_dist=params.umap_min_dist,
            random_state=params.seed,
            init="spectral" if len(z) > params.umap_neighbors + 2 else "random",
        )
        return np.ascontiguousarray(reducer.fit_transform(z), dtype=np.float32)


def trustworthiness_on_sample(
    z: np.ndarray, coords: np.ndarray, *, sample: int = TRUST_SAMPLE, k: int = TRUST_NEIGHBORS, seed: int = 0
) -> float:
    """scikit-learn's trustworthiness (k neighbours) of the map on a seeded sample of rows.

    1.0: every map neighbour is also a neighbour in feature space. Sampled because the exact measure
    is O(n^2); neighbours are those within the sample.
    """
    from sklearn.manifold import trustworthiness

    n = len(z)
    rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False)) if n > sample else None
    zs, cs = (z, coords) if rows is None else (z[rows], coords[rows])
    k = min(k, (len(zs) - 1) // 2)
    if k < 1:
        return float("nan")
    return float(trustworthiness(zs, cs, n_neighbors=k))


# -------------------------------------------------------------------------------------- storage
@dataclass
class StoredMap:
    """A map as stored: the photo ids (row order) and their 2-D coordinates."""

    name: str
    photo_ids: np.ndarray
    coords: np.ndarray  # float32 (n, 2)
    trustworthiness: float
    reused: bool
    seconds: float = 0.0


def _matches(fs: feature_store.FeatureSet, wanted: dict[str, Any]) -> bool:
    return all(fs.params.get(key) == value for key, value in wanted.items())


def ensure_map(
    corpus: Corpus,
    features: str,
    photo_ids: np.ndarray,
    params: MapParams,
    *,
    z: Callable[[], np.ndarray],
    progress: Progress | None = None,
    stop: StopCheck | None = None,
) -> StoredMap:
    """The stored map of ``features`` for exactly these photos (in this order), computing it if needed.

    ``z`` returns the PCA-reduced rows of those photos; it is only called when the map is computed.
    """
    import time

    source = feature_store.open_feature_set(corpus, features)
    name = map_set_name(features, params.method)
    wanted = {
        "map": params.as_dict(),
        "source": features,
        "source_model_id": source.model_id,
        "photo_ids_sha256": ids_digest(photo_ids),
    }
    if feature_store.has_feature_set(corpus, name):
        fs = feature_store.open_feature_set(corpus, name)
        if _matches(fs, wanted) and fs.rows == len(photo_ids):
            stored_ids = fs.photo_ids()
            if np.array_equal(stored_ids, photo_ids):
                coords = np.asarray(fs.matrix(), dtype=np.float32)
                return StoredMap(
                    name, stored_ids, coords, float(fs.params.get("trustworthiness", "nan")), True
                )
    started = time.perf_counter()
    reduced = z()
    coords = embed_2d(reduced, params, progress=progress, stop=stop)
    trust = trustworthiness_on_sample(reduced, coords, seed=params.seed)
    seconds = time.perf_counter() - started
    _replace_set(corpus, name)
    feature_store.append_rows(
        corpus,
        name,
        photo_ids,
        coords,
        model_id=f"{params.method}({source.model_id})",
        dtype="float32",
        params={
            **wanted,
            "trustworthiness": round(trust, 5),
            "trustworthiness_sample": min(len(photo_ids), TRUST_SAMPLE),
            "seconds": round(seconds, 2),
        },
    )
    return StoredMap(name, np.asarray(photo_ids, dtype=np.int64), coords, trust, False, seconds)


def _replace_set(corpus: Corpus, name: str) -> None:
    """Drop an outdated map (registry first, then files): a crash in between only means recomputing."""
    if not feature_store.has_feature_set(corpus, name):
        return
    folder = corpus.abs_path(feature_store.open_feature_set(corpus, name).path)
    corpus.unregister_feature_set(name)
    shutil.rmtree(folder, ignore_errors=True)
