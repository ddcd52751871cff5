"""The feature store: per feature set, memory-mapped ``.npy`` shards plus a row → photo-id index.

Why not SQLite: a million 1280-d vectors are 2.5 GB of float16; they belong in flat arrays that numpy,
faiss and onnxruntime read without copying. The catalog only registers each set (``feature_sets``:
model id, dims, dtype, path, rows, and the list of shards in ``params``).

Layout: ``features/<safe name>/shard-00000.npy`` (rows × dims) with ``shard-00000.ids.npy`` (int64 catalog
photo ids, one per row). Runs append shards, so an incremental run never rewrites old rows; ``compact``
merges them into one shard so that loading costs no more than one mmap.

Crash safety: a shard is written under a temporary name, fsynced and renamed, then registered in the
catalog. A shard that was renamed but never registered is simply overwritten by the next run, because
shard numbers come from the registry, not from the folder listing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import corpus_files, corpus_paths
from photocorpus.errors import PhotocorpusError

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

DTYPES = {"float16": np.float16, "float32": np.float32}


class FeatureSetNotFoundError(PhotocorpusError):
    """The requested feature set is not registered in the catalog."""


def feature_dir(name: str) -> str:
    """Corpus-relative folder of a feature set (derived from a sanitized name)."""
    return f"{corpus_paths.FEATURES_DIR}/{corpus_paths.safe_component(name)}"


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    try:
        with corpus_files.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, array)
    except OSError as exc:  # disk full, permissions: a clear StorageError, no scratch file left behind
        raise corpus_files.storage_error(exc, path) from exc


@dataclass
class FeatureSet:
    """A registered feature set: read its rows lazily, through memory maps."""

    corpus: Corpus
    name: str
    model_id: str
    dims: int
    dtype: str
    path: str
    rows: int
    params: dict[str, Any]

    @property
    def shards(self) -> list[str]:
        return list(self.params.get("shards", []))

    def _shard_paths(self, shard: str) -> tuple[Path, Path]:
        base = self.corpus.abs_path(f"{self.path}/{shard}")
        return base.with_suffix(".npy"), base.with_suffix(".ids.npy")

    def photo_ids(self) -> np.ndarray:
        """Catalog photo ids, one per row, in row order (int64)."""
        parts = [np.load(self._shard_paths(s)[1]) for s in self.shards]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def matrix(self) -> np.ndarray:
        """All rows as one (rows × dims) array: a read-only memmap when the set has one shard."""
        if not self.shards:
            return np.zeros((0, self.dims), dtype=DTYPES[self.dtype])
        maps = [np.load(self._shard_paths(s)[0], mmap_mode="r") for s in self.shards]
        return maps[0] if len(maps) == 1 else np.concatenate(maps)

    def normalized(self, rows: np.ndarray | None = None) -> np.ndarray:
        """L2-normalised float32 rows (all, or the given row indices), ready for cosine similarity."""
        mat = self.matrix()
        block = np.asarray(mat if rows is None else mat[rows], dtype=np.float32)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        return block / np.maximum(norms, 1e-12)

    def rows_for(self, photo_ids: Sequence[int]) -> np.ndarray:
        """Row indices of the given photo ids (−1 where a photo has no row)."""
        ids = self.photo_ids()
        order = np.argsort(ids, kind="stable")
        wanted = np.asarray(photo_ids, dtype=np.int64)
        pos = np.searchsorted(ids[order], wanted)
        pos = np.clip(pos, 0, max(len(ids) - 1, 0))
        found = len(ids) > 0
        hit = ids[order][pos] == wanted if found else np.zeros(len(wanted), dtype=bool)
        return np.where(hit, order[pos] if found else -1, -1)


def open_feature_set(corpus: Corpus, name: str) -> FeatureSet:
    """Open a registered feature set; the error lists what exists."""
    for entry in corpus.feature_sets():
        if entry["name"] == name:
            return FeatureSet(
                corpus=corpus,
                name=entry["name"],
                model_id=entry["model_id"],
                dims=int(entry["dims"]),
                dtype=entry["dtype"],
                path=entry["path"],
                rows=int(entry["rows"]),
                params=entry["params"],
            )
    known = ", ".join(e["name"] for e in corpus.feature_sets()) or "none yet"
    raise FeatureSetNotFoundError(
        f"no feature set {name!r} in {corpus.root} (known: {known}); compute it with `photocorpus featurize`"
    )


def has_feature_set(corpus: Corpus, name: str) -> bool:
    return any(e["name"] == name for e in corpus.feature_sets())


def append_rows(
    corpus: Corpus,
    name: str,
    photo_ids: Sequence[int] | np.ndarray,
    rows: np.ndarray,
    *,
    model_id: str,
    dtype: str = "float16",
    params: dict[str, Any] | None = None,
) -> FeatureSet:
    """Append rows for some photos as a new shard and register it; returns the updated set."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    rows = np.asarray(rows)
    ids = np.asarray(photo_ids, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[0] != ids.shape[0]:
        raise ValueError(f"rows must be (n, dims) with n = {ids.shape[0]} photo ids, got {rows.shape}")
    with corpus.transaction():
        try:
            current = open_feature_set(corpus, name)
        except FeatureSetNotFoundError:
            current = None
        if current is not None and current.dims != rows.shape[1]:
            raise ValueError(
                f"feature set {name!r} has {current.dims} dims; refusing rows of {rows.shape[1]}"
            )
        if current is not None and current.dtype != dtype:
            raise ValueError(f"feature set {name!r} is {current.dtype}; refusing {dtype} rows")
        shards = current.shards if current else []
        shard = f"shard-{len(shards):05d}"
        folder = feature_dir(name)
        base = corpus.abs_path(folder)
        base.mkdir(parents=True, exist_ok=True)
        _save_npy_atomic(base / f"{shard}.npy", rows.astype(DTYPES[dtype], copy=False))
        _save_npy_atomic(base / f"{shard}.ids.npy", ids)
        merged = {**(current.params if current else {}), **(params or {}), "shards": [*shards, shard]}
        total = (current.rows if current else 0) + int(ids.shape[0])
        corpus.register_feature_set(name, model_id, int(rows.shape[1]), dtype, folder, total, merged)
    return open_feature_set(corpus, name)


def compact(corpus: Corpus, name: str) -> FeatureSet:
    """Merge all shards of a set into one, so that loading is a single mmap."""
    fs = open_feature_set(corpus, name)
    if len(fs.shards) <= 1:
        return fs
    base = corpus.abs_path(fs.path)
    merged = f"compact-{uuid.uuid4().hex[:8]}"
    _save_npy_atomic(base / f"{merged}.npy", np.asarray(fs.matrix()))
    _save_npy_atomic(base / f"{merged}.ids.npy", fs.photo_ids())
    old = fs.shards
    corpus.register_feature_set(
        name, fs.model_id, fs.dims, fs.dtype, fs.path, fs.rows, {**fs.params, "shards": [merged]}
    )
    for shard in old:  # only after the registry points at the merged shard
        for suffix in (".npy", ".ids.npy"):
            (base / f"{shard}{suffix}").unlink(missing_ok=True)
    return open_feature_set(corpus, name)


def featurized_photo_ids(corpus: Corpus, name: str) -> set[int]:
    """Photo ids that already have a row (for resuming a featurize run)."""
    try:
        return set(open_feature_set(corpus, name).photo_ids().tolist())
    except FeatureSetNotFoundError:
        return set()
