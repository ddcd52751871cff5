"""PCA-reduced raw pixels (``--model raw-pixels --pca N``): the basis, fitted once and stored with the set.

The basis is fitted (seeded, randomized SVD) on the first pending photos of the set's first run,
stored beside its shards as ``pca.npz`` and registered in the set's params with its sha256, so that
later incremental runs, and every Ray actor, project new photos on exactly the same basis.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import feature_store
from photocorpus.corpus_files import atomic_path
from photocorpus.features.decode import DecodePool, decode_tasks
from photocorpus.features.model_registry import FeaturizeError

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = ["PCA_MIN_FIT_ROWS", "Pca", "load_or_fit_pca"]

PCA_MIN_FIT_ROWS = 1024


@dataclass(frozen=True)
class Pca:
    """A fitted basis, applied by the raw-pixels runner (in the driver, or in each Ray actor)."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T).astype(np.float32)


def load_or_fit_pca(
    corpus: Corpus,
    set_name: str,
    dims: int,
    side: int,
    todo: np.ndarray,
    pool: DecodePool,
    seed: int,
) -> tuple[Pca, dict[str, Any]]:
    """The set's PCA basis: the stored one, or one fitted (seeded) on the first pending photos.

    Stored beside the shards and registered in the set's params, so later incremental runs project
    new photos on exactly the same basis.
    """
    folder = corpus.abs_path(feature_store.feature_dir(set_name))
    basis = folder / "pca.npz"
    try:
        fs = feature_store.open_feature_set(corpus, set_name)
        info = fs.params.get("pca")
    except feature_store.FeatureSetNotFoundError:
        info = None
    if info and basis.is_file():
        with np.load(basis) as data:
            return Pca(data["mean"], data["components"]), info
    from sklearn.decomposition import PCA

    fit_rows = min(len(todo), max(PCA_MIN_FIT_ROWS, 2 * dims))
    if fit_rows < dims:
        raise FeaturizeError(
            f"raw-pixels with raw_pixels_pca={dims} (--pca) needs at least {dims} photos to fit; "
            f"only {len(todo)} are pending"
        )
    sample = todo[:fit_rows]
    vectors: list[np.ndarray] = []
    for start in range(0, len(sample), 256):
        chunk = sample[start : start + 256].tolist()
        for decoded in pool.map([decode_tasks(corpus, chunk, side)]):
            vectors.extend(d.pixels for d in decoded if d.pixels is not None)
    if len(vectors) < dims:
        raise FeaturizeError(
            f"raw-pixels with raw_pixels_pca={dims} (--pca): only {len(vectors)} readable photos to fit it"
        )
    pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit(np.stack(vectors))
    result = Pca(pca.mean_.astype(np.float32), pca.components_.astype(np.float32))
    with atomic_path(basis) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, mean=result.mean, components=result.components)
    digest = hashlib.sha256(basis.read_bytes()).hexdigest()
    info = {
        "dims": dims,
        "fit_rows": len(vectors),
        "seed": seed,
        "file": "pca.npz",
        "sha256": digest,
        "explained_variance": round(float(pca.explained_variance_ratio_.sum()), 4),
    }
    return result, info
