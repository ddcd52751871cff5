"""k-means clusters of a feature set, the choice of k, the catalog's cluster tables and cluster summaries.

Clustering runs on the same seeded 50-d PCA rows as the map (L2-normalised first), as seed 004 ran
k-means on its features before plotting. Below :data:`FAISS_MIN_ROWS` photos it uses scikit-learn's
MiniBatchKMeans (3 seeded restarts: cheap at that size, and steadier), from there on faiss's k-means,
seeded by k-means++ on a sample, which trains on at most 256 photos per cluster and assigns everyone
in one BLAS pass.

``k="auto"`` fits every k of :data:`K_AUTO_RANGE` (4, 5, 6, 8, 10, 12, 15, 20, 25, 30) and keeps the
one with the highest silhouette, measured on a seeded sample of :data:`SILHOUETTE_SAMPLE` photos.
Silhouette rewards compact, well-separated clusters; on photo corpora it usually picks a smaller k
than a human would, so pass ``--k N`` to browse finer groups. When the silhouettes are flat (several k
within :data:`FLAT_SILHOUETTE_TOLERANCE` of the best), the smallest of those k is kept: a difference
that small is sampling noise, and without it the choice drifted to the top of the grid (k = 25 or 30 on
InstaNY100K photos). A best silhouette under :data:`WEAK_SILHOUETTE` (0.25, below which Kaufman and
Rousseeuw find "no substantial structure") marks the choice as weak, and the run, the report and the
command say so.

A run is stored as ``cluster_runs`` (run name ``<feature set>/k<k>``, method, seed, photos, params
with the silhouettes) plus one ``clusters`` row per photo (cluster, distance to the centroid), written
in one transaction; an identical request (same features, photos, k request and seed) reuses it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus.explore.embed2d import ids_digest
from photocorpus.explore.errors import ExploreError
from photocorpus.records import utc_now

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = [
    "FAISS_MIN_ROWS",
    "FLAT_SILHOUETTE_TOLERANCE",
    "GALLERY_SIZE",
    "K_AUTO_RANGE",
    "WEAK_SILHOUETTE",
    "ClusterRun",
    "ClusterSummary",
    "auto_k_is_weak",
    "choose_k",
    "ensure_clusters",
    "kmeans",
    "load_run",
    "run_name",
    "summarize_clusters",
]

FAISS_MIN_ROWS = 50_000
K_AUTO_RANGE: tuple[int, ...] = (4, 5, 6, 8, 10, 12, 15, 20, 25, 30)
SILHOUETTE_SAMPLE = 5_000
FLAT_SILHOUETTE_TOLERANCE = 0.01
WEAK_SILHOUETTE = 0.25
GALLERY_SIZE = 12
TOP_TERMS = 8
TOP_LABELS = 5


@dataclass
class KMeansResult:
    labels: np.ndarray  # int64 (n,)
    distances: np.ndarray  # float32 (n,), euclidean, to the own centroid
    centroids: np.ndarray  # float32 (k, d)
    inertia: float
    method: str


@dataclass
class ClusterRun:
    """A stored clustering: photo ids with their cluster and distance to its centroid."""

    run: str
    feature_set: str
    k: int
    method: str
    seed: int
    photo_ids: np.ndarray
    clusters: np.ndarray
    distances: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


def run_name(features: str, k: int) -> str:
    return f"{features}/k{k}"


def kmeans(z: np.ndarray, k: int, *, seed: int = 0, faiss_min_rows: int = FAISS_MIN_ROWS) -> KMeansResult:
    """k-means of the rows of ``z`` (faiss from ``faiss_min_rows`` rows on, else MiniBatchKMeans)."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    n = len(z)
    if not 2 <= k <= n:
        raise ExploreError(f"k must be between 2 and the number of photos ({n}), got {k}")
    if n >= faiss_min_rows:
        import faiss

        from photocorpus.worker_counts import default_workers

        faiss.omp_set_num_threads(default_workers())
        from sklearn.cluster import kmeans_plusplus

        # faiss seeds with random points; k-means++ on a sample avoids its merged-clusters minima.
        rng = np.random.default_rng(seed)
        seed_rows = rng.choice(n, min(n, 256 * k), replace=False)
        init, _ = kmeans_plusplus(z[seed_rows], k, random_state=seed)
        km = faiss.Kmeans(z.shape[1], k, niter=25, seed=seed, verbose=False, max_points_per_centroid=256)
        km.train(z, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
        dist2, assign = km.index.search(z, 1)
        labels = assign[:, 0].astype(np.int64)
        centroids = np.asarray(km.centroids, dtype=np.float32)
        distances = np.sqrt(np.maximum(dist2[:, 0], 0)).astype(np.float32)
        method = "faiss-kmeans"
    else:
        from sklearn.cluster import MiniBatchKMeans

        mb = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=2048)
        labels = mb.fit_predict(z).astype(np.int64)
        centroids = mb.cluster_centers_.astype(np.float32)
        distances = np.linalg.norm(z - centroids[labels], axis=1).astype(np.float32)
        method = "minibatch-kmeans"
    labels, centroids = _order_by_size(labels, centroids)
    return KMeansResult(
        labels, distances, centroids, float(np.sum(distances.astype(np.float64) ** 2)), method
    )


def _order_by_size(labels: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters largest first (ties by old id), so cluster 0 is the biggest in every report."""
    k = len(centroids)
    sizes = np.bincount(labels, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))  # new id i = old cluster order[i]
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return remap[labels], centroids[order]


def choose_k(
    z: np.ndarray,
    *,
    k_range: tuple[int, ...] = K_AUTO_RANGE,
    seed: int = 0,
    sample: int = SILHOUETTE_SAMPLE,
    faiss_min_rows: int = FAISS_MIN_ROWS,
) -> tuple[int, dict[int, float]]:
    """The k of ``k_range`` with the best silhouette (seeded sample), and every k's silhouette."""
    from sklearn.metrics import silhouette_score

    n = len(z)
    candidates = [k for k in k_range if 2 <= k < n]
    if not candidates:
        raise ExploreError(f"k='auto' needs more photos than the smallest k of {k_range}; got {n} photos")
    rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False)) if n > sample else None
    zs = z if rows is None else z[rows]
    scores: dict[int, float] = {}
    for k in candidates:
        labels = kmeans(z, k, seed=seed, faiss_min_rows=faiss_min_rows).labels
        ls = labels if rows is None else labels[rows]
        scores[k] = float(silhouette_score(zs, ls)) if len(set(ls.tolist())) > 1 else -1.0
    top = max(scores.values())
    best = min(k for k in candidates if scores[k] >= top - FLAT_SILHOUETTE_TOLERANCE)
    return best, scores


def auto_k_is_weak(silhouettes: dict[int, float] | dict[str, float]) -> bool:
    """Whether the best silhouette of an automatic choice is too low to call the clusters real."""
    return bool(silhouettes) and max(silhouettes.values()) < WEAK_SILHOUETTE


# ------------------------------------------------------------------------------------------ catalog
def load_run(corpus: Corpus, run: str) -> ClusterRun | None:
    row = corpus.conn.execute("SELECT * FROM cluster_runs WHERE run = ?", (run,)).fetchone()
    if row is None:
        return None
    rows = corpus.conn.execute(
        "SELECT photo_id, cluster, distance FROM clusters WHERE run = ? ORDER BY photo_id", (run,)
    ).fetchall()
    data = np.array([(r[0], r[1], r[2]) for r in rows], dtype=np.float64).reshape(-1, 3)
    return ClusterRun(
        run=row["run"],
        feature_set=row["feature_set"],
        k=int(row["k"]),
        method=row["method"],
        seed=int(row["seed"]),
        photo_ids=data[:, 0].astype(np.int64),
        clusters=data[:, 1].astype(np.int64),
        distances=data[:, 2].astype(np.float32),
        params=json.loads(row["params"]),
    )


def _find_reusable(corpus: Corpus, features: str, k_request: str, seed: int, digest: str) -> str | None:
    for row in corpus.conn.execute(
        "SELECT run, params FROM cluster_runs WHERE feature_set = ? AND seed = ? ORDER BY created_at DESC",
        (features, seed),
    ):
        params = json.loads(row["params"])
        if params.get("k_request") == k_request and params.get("photo_ids_sha256") == digest:
            return str(row["run"])
    return None


def ensure_clusters(
    corpus: Corpus,
    features: str,
    photo_ids: np.ndarray,
    k: int | str,
    *,
    z: Any,
    seed: int = 0,
    pca_dims: int = 50,
    faiss_min_rows: int = FAISS_MIN_ROWS,
) -> ClusterRun:
    """The stored clustering of these photos for this k request, computing and storing it if needed.

    ``z`` is a callable returning the reduced rows of ``photo_ids`` (row order); it is only called
    when the clustering is computed.
    """
    k_request = str(k)
    if k_request != "auto" and (not k_request.isdigit() or int(k_request) < 2):
        raise ExploreError(f"k must be 'auto' or an integer >= 2, got {k!r}")
    photo_ids = np.asarray(photo_ids, dtype=np.int64)
    digest = ids_digest(np.sort(photo_ids))
    found = _find_reusable(corpus, features, k_request, seed, digest)
    if found is not None:
        run = load_run(corpus, found)
        if run is not None and len(run.photo_ids) == len(photo_ids):
            run.reused = True
            return _in_order(run, photo_ids)
    reduced = z()
    silhouettes: dict[int, float] = {}
    if k_request == "auto":
        chosen, silhouettes = choose_k(reduced, seed=seed, faiss_min_rows=faiss_min_rows)
    else:
        chosen = int(k_request)
    result = kmeans(reduced, chosen, seed=seed, faiss_min_rows=faiss_min_rows)
    name = run_name(features, chosen)
    params = {
        "k_request": k_request,
        "photo_ids_sha256": digest,
        "pca_dims": pca_dims,
        "normalized": True,
        "inertia": round(result.inertia, 4),
        "k_range": list(K_AUTO_RANGE) if k_request == "auto" else None,
        "silhouettes": {str(key): round(val, 5) for key, val in silhouettes.items()},
        "auto_k_weak": auto_k_is_weak(silhouettes),
    }
    with corpus.transaction() as conn:
        conn.execute("DELETE FROM cluster_runs WHERE run = ?", (name,))  # cascades to clusters
        conn.execute(
            "INSERT INTO cluster_runs (run, feature_set, k, method, seed, photos, params, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, features, chosen, result.method, seed, len(photo_ids), json.dumps(params), utc_now()),
        )
        conn.executemany(
            "INSERT INTO clusters (run, photo_id, cluster, distance) VALUES (?, ?, ?, ?)",
            zip(
                [name] * len(photo_ids),
                photo_ids.tolist(),
                result.labels.tolist(),
                result.distances.astype(float).tolist(),
                strict=True,
            ),
        )
    return ClusterRun(
        run=name,
        feature_set=features,
        k=chosen,
        method=result.method,
        seed=seed,
        photo_ids=photo_ids,
        clusters=result.labels,
        distances=result.distances,
        params=params,
    )


def _in_order(run: ClusterRun, photo_ids: np.ndarray) -> ClusterRun:
    """The run's rows rearranged into the order of ``photo_ids`` (the stored ones are sorted by id)."""
    pos = np.searchsorted(run.photo_ids, photo_ids)
    run.photo_ids, run.clusters, run.distances = photo_ids, run.clusters[pos], run.distances[pos]
    return run


# ---------------------------------------------------------------------------------------- summaries
@dataclass
class ClusterSummary:
    """What a cluster's gallery shows."""

    cluster: int
    size: int
    top_labels: list[tuple[str, int]]  # ImageNet top-1 class names, most common first
    top_categories: list[tuple[str, int]]  # ontology categories
    top_terms: list[tuple[str, float]]  # tags and hashtags by tf-idf against the other clusters
    closest: list[int]  # photo ids nearest to the centroid, nearest first
    source_labels: list[tuple[str, int]] = field(default_factory=list)  # the photos' own labels


def summarize_clusters(
    clusters: np.ndarray,
    distances: np.ndarray,
    photo_ids: np.ndarray,
    *,
    imagenet: list[str | None] | None = None,
    categories: list[str | None] | None = None,
    terms: list[list[str]] | None = None,
    source_labels: list[str] | None = None,
    gallery_size: int = GALLERY_SIZE,
) -> list[ClusterSummary]:
    """Per cluster: size, top ImageNet labels and categories, tf-idf terms, the photos nearest its centre.

    All per-photo inputs are aligned with ``photo_ids``. Terms are tags and hashtags: a cluster is one
    document made of all its photos' terms, weighed by tf-idf against the other clusters, so a tag
    every cluster shares (``#nyc`` in a New York corpus) ranks below the ones that set it apart.
    """
    k = int(clusters.max()) + 1 if len(clusters) else 0
    members = [np.flatnonzero(clusters == c) for c in range(k)]
    term_scores = _tfidf_terms(members, terms) if terms is not None else [[] for _ in range(k)]
    out = []
    for c, rows in enumerate(members):
        order = rows[np.argsort(distances[rows], kind="stable")]
        out.append(
            ClusterSummary(
                cluster=c,
                size=len(rows),
                top_labels=_top(imagenet, rows, TOP_LABELS),
                top_categories=_top(categories, rows, TOP_LABELS),
                top_terms=term_scores[c],
                closest=[int(photo_ids[i]) for i in order[:gallery_size]],
                source_labels=_top(source_labels, rows, 3),
            )
        )
    return out


def _top(values: list[str | None] | list[str] | None, rows: np.ndarray, n: int) -> list[tuple[str, int]]:
    if values is None:
        return []
    counts = Counter(values[i] for i in rows if values[i])
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _tfidf_terms(members: list[np.ndarray], terms: list[list[str]]) -> list[list[tuple[str, float]]]:
    """Per cluster, its terms by tf x idf with idf = ln((1 + clusters) / clusters containing the term).

    Written out rather than scikit-learn's TfidfVectorizer, whose idf adds 1 to every term: with a
    dozen clusters that keeps a tag found in all of them (``#nyc``) on top of every cluster.
    """
    import math

    counts = [Counter(t for i in rows for t in terms[i]) for rows in members]
    df = Counter(t for c in counts for t in c)
    n_docs = len(members)
    out = []
    for c in counts:
        total = sum(c.values()) or 1
        scored = [(t, (n / total) * math.log((1 + n_docs) / df[t])) for t, n in c.items()]
        scored.sort(key=lambda kv: (-kv[1], kv[0]))
        out.append([(t, round(s, 4)) for t, s in scored[:TOP_TERMS] if s > 0])
    return out
