"""A faiss index over photo vectors (joint-space embeddings, or image features), saved in the corpus.

Choice of index (``[learn] index = auto``): exact inner-product search (``flat``) up to
``exact_search_max`` photos (200k by default: a flat scan of 200k × 384 floats takes ~40 ms on one
core), and an inverted-file index above (``ivf``: k-means cells, vectors stored as float16). HNSW is
available on request; it answers faster but builds far slower on a small machine and cannot delete.

Recall: at build time ``nprobe`` (IVF) or ``efSearch`` (HNSW) is raised until recall@10 against exact
search reaches ``target_recall`` (0.97) on a sample of held-out probe queries drawn from the data
(each a stored vector plus noise, so near-duplicates do not make it trivially easy); the reached
recall is saved with the index and reported.

Incremental: the index remembers its source's fingerprint (a semantic model's weights) and which
photo ids it holds. When the source's feature set grows, only the new photos are embedded and added;
removed photos are removed (flat, IVF) or trigger a rebuild (HNSW); a changed model, a changed index
kind, or a flat index outgrowing ``exact_search_max`` under ``auto`` rebuild from scratch.

Files: ``<folder>/index-<token>.faiss`` plus ``index.json`` naming it; a new build writes a new file
and then atomically replaces ``index.json``, so a reader never sees a half-written index.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus.corpus_files import atomic_path, write_atomic
from photocorpus.learn.dataset import LearnError

if TYPE_CHECKING:
    import faiss

INDEX_KINDS = ("flat", "ivf", "hnsw")
TARGET_RECALL = 0.97
PROBE_QUERIES = 300
IVF_TRAIN_POINTS_PER_CELL = 64
HNSW_M = 32
ADD_BATCH = 65_536


@dataclass
class IndexInfo:
    kind: str
    count: int
    dims: int
    source: str
    fingerprint: str
    params: dict[str, Any] = field(default_factory=dict)
    recall_at_10: float | None = None
    build_seconds: float = 0.0
    file: str = ""
    feature_signature: str = ""


def choose_kind(n: int, setting: str, exact_max: int) -> str:
    """``flat`` below ``exact_max`` photos, ``ivf`` above, unless ``setting`` names a kind."""
    if setting in INDEX_KINDS:
        return setting
    if setting != "auto":
        raise LearnError(f"index kind must be auto, {', '.join(INDEX_KINDS)}; got {setting!r}")
    return "flat" if n <= exact_max else "ivf"


def ivf_cells(n: int) -> int:
    """Number of IVF cells: a power of two near 2 * sqrt(n), at least 16 and at most n / 39."""
    target = 2 * math.sqrt(max(n, 1))
    cells = 2 ** round(math.log2(max(target, 16)))
    return int(max(16, min(cells, max(16, n // 39))))


def _threads() -> None:
    import faiss

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    faiss.omp_set_num_threads(max(1, cores))


def _new_index(kind: str, dims: int, n: int, sample: np.ndarray, seed: int) -> tuple[faiss.Index, dict]:
    import faiss

    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dims)), {}
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dims, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
        return faiss.IndexIDMap2(inner), {"M": HNSW_M, "efConstruction": 80}
    cells = ivf_cells(n)
    quantizer = faiss.IndexFlatIP(dims)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dims, cells, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.seed = seed
    index.cp.niter = 12
    index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_CELL
    index.train(sample)
    return index, {"nlist": cells, "storage": "fp16", "train_points": len(sample)}


def _set_search_param(index: faiss.Index, kind: str, value: int) -> None:
    import faiss

    if kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = value
    elif kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = value


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the exact top-k ids that the approximate top-k found."""
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) / k for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)) if hits else 1.0


def probe_queries(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Query-like probes: random stored vectors plus isotropic noise as long as the vector (cos ~0.7).

    A query is never a stored photo: a text query lands between photos. Noise this large makes the
    probes harder than the data's own points, so the calibrated setting errs on the side of recall.
    """
    rng = np.random.default_rng(seed)
    picks = vectors[rng.choice(len(vectors), size=min(count, len(vectors)), replace=False)]
    noise = rng.standard_normal(picks.shape).astype(np.float32)
    noise *= 1.0 / math.sqrt(picks.shape[1])
    q = picks + noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def calibrate(
    index: faiss.Index, kind: str, vectors: np.ndarray, ids: np.ndarray, seed: int, target: float
) -> tuple[dict[str, int], float]:
    """Raise nprobe / efSearch until recall@10 vs exact search reaches ``target``."""
    import faiss

    if kind == "flat":
        return {}, 1.0
    queries = probe_queries(vectors, PROBE_QUERIES, seed)
    # brute force straight over the array: an exact index would copy every vector once more
    _, exact_rows = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    exact_ids = ids[exact_rows]
    name = "nprobe" if kind == "ivf" else "efSearch"
    limit = faiss.extract_index_ivf(index).nlist if kind == "ivf" else 4096
    value = 8 if kind == "ivf" else 32
    recall = 0.0
    while True:
        _set_search_param(index, kind, value)
        _, found = index.search(queries, 10)
        recall = recall_at_k(found, exact_ids)
        if recall >= target or value >= limit:
            return {name: value}, recall
        value = min(limit, value * 2)


class PhotoIndex:
    """A loaded index: ``search(queries, k) -> (scores, photo_ids)``."""

    def __init__(self, index: faiss.Index, info: IndexInfo, ids: np.ndarray) -> None:
        self.index = index
        self.info = info
        self.ids = ids  # sorted photo ids it holds

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), self.info.count)) if self.info.count else 1
        if self.info.count == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, ids = self.index.search(q, k)
        return scores, ids

    @property
    def folder_file(self) -> str:
        return self.info.file


# ------------------------------------------------------------------------------------------ storage
def _read_info(folder: Path) -> IndexInfo | None:
    path = folder / "index.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return IndexInfo(**data)
    except (json.JSONDecodeError, TypeError):
        return None  # unreadable: rebuild


def _write(folder: Path, index: faiss.Index, info: IndexInfo, ids: np.ndarray) -> None:
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    old = _read_info(folder)
    info.file = f"index-{token}.faiss"
    with atomic_path(folder / info.file) as tmp:
        faiss.write_index(index, str(tmp))
    with atomic_path(folder / f"ids-{token}.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, ids)
    write_atomic(folder / "index.json", json.dumps(info.__dict__, indent=2, sort_keys=True))
    for stale in folder.glob("index-*.faiss"):
        if stale.name != info.file:
            stale.unlink(missing_ok=True)
    for stale in folder.glob("ids-*.npy"):
        if stale.name != f"ids-{token}.npy":
            stale.unlink(missing_ok=True)
    del old


def _load(folder: Path, info: IndexInfo) -> PhotoIndex | None:
    import faiss

    path = folder / info.file
    ids_path = folder / info.file.replace("index-", "ids-").replace(".faiss", ".npy")
    if not path.is_file() or not ids_path.is_file():
        return None
    index = faiss.read_index(str(path))
    for name, value in info.params.items():
        if name in ("nprobe", "efSearch"):
            _set_search_param(index, info.kind, int(value))
    return PhotoIndex(index, info, np.load(ids_path))


# ------------------------------------------------------------------------------------------ building
@dataclass
class IndexSource:
    """What an index is built from: photo ids, and a function that embeds them (unit-length rows)."""

    name: str
    fingerprint: str  # changes whenever embeddings of the same photo would change
    dims: int
    photo_ids: Callable[[], np.ndarray]
    embed: Callable[[np.ndarray], np.ndarray]  # photo ids -> (n × dims) float32, unit length
    signature: Callable[[], str]  # cheap: changes when the photo set may have changed


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray,
    *,
    kind: str,
    seed: int = 0,
    target_recall: float = TARGET_RECALL,
    source: str = "",
    fingerprint: str = "",
    progress: Callable[[int], None] | None = None,
) -> PhotoIndex:
    """Build an index of ``kind`` over unit-length ``vectors`` labelled with ``ids``, and calibrate it."""
    _threads()
    started = time.perf_counter()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    n, dims = vectors.shape
    rng = np.random.default_rng(seed)
    sample = vectors
    if kind == "ivf":
        cells = ivf_cells(n)
        take = min(n, cells * IVF_TRAIN_POINTS_PER_CELL)
        sample = vectors[np.sort(rng.choice(n, size=take, replace=False))] if take < n else vectors
        if n < cells:
            raise LearnError(f"an IVF index needs at least {cells} photos, got {n}; use index='flat'")
    index, params = _new_index(kind, dims, n, sample, seed)
    for start in range(0, n, ADD_BATCH):
        index.add_with_ids(vectors[start : start + ADD_BATCH], ids[start : start + ADD_BATCH])
        if progress is not None:
            progress(min(ADD_BATCH, n - start))
    recall: float | None = 1.0
    if kind != "flat" and n:
        tuned, recall = calibrate(index, kind, vectors, ids, seed, target_recall)
        params.update(tuned)
    info = IndexInfo(
        kind=kind,
        count=n,
        dims=dims,
        source=source,
        fingerprint=fingerprint,
        params=params,
        recall_at_10=recall,
        build_seconds=round(time.perf_counter() - started, 3),
    )
    return PhotoIndex(index, info, np.sort(ids))


def ensure_index(
    folder: Path,
    source: IndexSource,
    *,
    setting: str = "auto",
    exact_max: int = 200_000,
    seed: int = 0,
    rebuild: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[PhotoIndex, str]:
    """Load the index in ``folder``, bringing it up to date with ``source``; returns (index, action).

    ``action`` is ``loaded``, ``updated`` (incremental add/remove) or ``built``.
    """
    info = None if rebuild else _read_info(folder)
    signature = source.signature()
    current: PhotoIndex | None = None
    if info is not None and info.fingerprint == source.fingerprint and info.source == source.name:
        current = _load(folder, info)
    if current is not None and current.info.feature_signature == signature:
        wanted_kind = choose_kind(current.info.count, setting, exact_max)
        if wanted_kind == current.info.kind:
            return current, "loaded"
    ids = np.unique(source.photo_ids())
    kind = choose_kind(len(ids), setting, exact_max)
    if current is not None and current.info.kind == kind:
        added = np.setdiff1d(ids, current.ids, assume_unique=True)
        removed = np.setdiff1d(current.ids, ids, assume_unique=True)
        if not (len(removed) and kind == "hnsw"):
            if len(removed):
                current.index.remove_ids(removed)
            for start in range(0, len(added), ADD_BATCH):
                chunk = added[start : start + ADD_BATCH]
                current.index.add_with_ids(np.ascontiguousarray(source.embed(chunk), np.float32), chunk)
                if progress is not None:
                    progress(len(chunk))
            current.ids = ids
            current.info.count = len(ids)
            current.info.feature_signature = signature
            _write(folder, current.index, current.info, ids)
            return current, "updated" if len(added) or len(removed) else "loaded"
    vectors = np.zeros((0, source.dims), dtype=np.float32)
    if len(ids):
        vectors = np.concatenate(
            [source.embed(ids[s : s + ADD_BATCH]) for s in range(0, len(ids), ADD_BATCH)]
        )
    built = build_index(
        vectors,
        ids,
        kind=kind,
        seed=seed,
        source=source.name,
        fingerprint=source.fingerprint,
        progress=progress,
    )
    built.info.feature_signature = signature
    _write(folder, built.index, built.info, ids)
    return built, "built"
