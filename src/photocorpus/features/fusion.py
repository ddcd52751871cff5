"""Feature fusion: a new feature set whose rows are the L2-normalised rows of several sets, side by side.

Why normalise each block: sets differ in scale (logits, pooled activations, PCA'd pixels) and in
dimensionality; without it the set with the largest norms would dominate every distance computed on
the fused rows. A zero row (a photo a model could not see) stays zero rather than becoming NaN.

Why a stored set rather than fusion at read time: a fused set is then an ordinary feature set, so
``explore --features``, ``train classifier`` (``image_features``), search and export use it unchanged.
Its params record the inputs, their model ids and dims; a re-run with the same inputs adds only the
photos not yet fused (resume), and one whose inputs changed is refused, since mixing rows of two
different fusions would make them incomparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import feature_store
from photocorpus.errors import PhotocorpusError
from photocorpus.notebook import HtmlReport

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.interrupt import StopFlag
    from photocorpus.progress import ProgressHandle

__all__ = ["FUSE_CHUNK_PHOTOS", "FuseError", "FuseReport", "fuse_feature_sets", "fusion_params"]

FUSE_CHUNK_PHOTOS = 4096  # photos per appended shard: bounds the memory of one step
BLOCKS = "l2-normalised blocks"


class FuseError(PhotocorpusError):
    """A fusion cannot start: too few inputs, a name clash, or an existing set fused from other inputs."""


@dataclass
class FuseReport(HtmlReport):
    """What one fusion did: rows added now, photos already fused, and photos left out."""

    name: str
    inputs: list[str]
    dims: int
    added: int = 0
    already: int = 0
    missing: int = 0  # photos with a row in some input but not in all of them: left out
    interrupted: bool = False
    input_dims: dict[str, int] = field(default_factory=dict)


def fusion_params(sets: Sequence[feature_store.FeatureSet]) -> dict[str, Any]:
    """What identifies a fusion: its inputs in order, with their model ids and dims."""
    return {
        "inputs": [{"name": fs.name, "model_id": fs.model_id, "dims": fs.dims} for fs in sets],
        "blocks": BLOCKS,
    }


def _check_names(names: Sequence[str], name: str) -> None:
    if len(names) < 2:
        raise FuseError(f"fusion needs at least two feature sets, got {len(names)}: name two or more")
    if len(set(names)) != len(names):
        raise FuseError(f"each feature set can be fused once; got {list(names)}")
    if name in names:
        raise FuseError(f"the fused set's name {name!r} is one of its inputs; choose another --name")


def _normalised(block: np.ndarray) -> np.ndarray:
    block = np.asarray(block, dtype=np.float32)
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    return block / np.where(norms > 0, norms, 1.0)  # a zero row stays zero


def fuse_feature_sets(
    corpus: Corpus,
    names: Sequence[str],
    name: str,
    *,
    progress: ProgressHandle | None = None,
    stop: StopFlag | None = None,
) -> FuseReport:
    """Write (or extend) feature set ``name``: for each photo with a row in every input, the
    concatenation of its L2-normalised rows, in the order of ``names``.

    Rows are appended in chunks of :data:`FUSE_CHUNK_PHOTOS` photos, each its own shard, so that a
    stopped run keeps what it wrote and the same call resumes. ``stop`` is checked between chunks.
    """
    names = list(names)
    _check_names(names, name)
    sets = [feature_store.open_feature_set(corpus, n) for n in names]  # the error lists known sets
    params = fusion_params(sets)
    dims = sum(fs.dims for fs in sets)
    dtype = "float16" if all(fs.dtype == "float16" for fs in sets) else "float32"
    done: set[int] = set()
    if feature_store.has_feature_set(corpus, name):
        current = feature_store.open_feature_set(corpus, name)
        if current.params.get("fusion") != params or current.dims != dims or current.dtype != dtype:
            raise FuseError(
                f"feature set {name!r} exists and was not fused from these inputs ({', '.join(names)} as "
                f"they are now); remove it first with `photocorpus features remove {name}`"
            )
        done = set(current.photo_ids().tolist())
    ids = [fs.photo_ids() for fs in sets]
    common = ids[0]
    for other in ids[1:]:
        common = np.intersect1d(common, other)
    union = np.unique(np.concatenate(ids))
    report = FuseReport(
        name=name, inputs=names, dims=dims, missing=int(len(union) - len(common)),
        input_dims={fs.name: fs.dims for fs in sets},
    )  # fmt: skip
    todo = np.array([i for i in common.tolist() if i not in done], dtype=np.int64)
    report.already = int(len(common) - len(todo))
    if progress is not None:
        progress.set_total(len(todo))
    rows = [fs.rows_for(todo) for fs in sets]  # row index of each pending photo in each input
    matrices = [fs.matrix() for fs in sets]
    model_id = "fusion(" + " + ".join(fs.model_id for fs in sets) + ")"
    for start in range(0, len(todo), FUSE_CHUNK_PHOTOS):
        if stop:
            report.interrupted = True
            break
        chunk = slice(start, start + FUSE_CHUNK_PHOTOS)
        fused = np.hstack([_normalised(m[r[chunk]]) for m, r in zip(matrices, rows, strict=True)])
        feature_store.append_rows(
            corpus, name, todo[chunk], fused, model_id=model_id, dtype=dtype, params={"fusion": params}
        )
        report.added += len(todo[chunk])
        if progress is not None:
            progress(len(todo[chunk]))
    return report
