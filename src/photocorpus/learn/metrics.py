"""Retrieval and classification metrics: AP, mAP, P@k, accuracy, per-class accuracy, confusion matrix.

AP follows the MIRFlickr / TREC definition the paper's evaluation code uses: the mean, over the
relevant items, of the precision at each one's rank in the full ranking (a relevant item never
retrieved counts as precision 0, which cannot happen here since every photo is ranked). Equal
scores are ordered by position, so results never depend on sort stability.
"""

from __future__ import annotations

import numpy as np


def ranking(scores: np.ndarray) -> np.ndarray:
    """Indices that sort ``scores`` best first; ties keep the earlier index first."""
    return np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of ranking by ``scores`` (higher = better) against 0/1 ``relevant``; NaN with no relevant item."""
    rel = np.asarray(relevant, dtype=bool)
    if rel.shape != np.shape(scores):
        raise ValueError(f"scores {np.shape(scores)} and relevant {rel.shape} differ in shape")
    n_rel = int(rel.sum())
    if n_rel == 0:
        return float("nan")
    hits = rel[ranking(scores)]
    ranks = np.flatnonzero(hits) + 1  # 1-based positions of the relevant items
    precisions = np.arange(1, n_rel + 1) / ranks
    return float(precisions.mean())


def mean_average_precision(scores: np.ndarray, relevant: np.ndarray) -> tuple[float, np.ndarray]:
    """mAP over the columns (queries) of ``scores``/``relevant``, skipping columns without positives."""
    aps = np.array(
        [average_precision(scores[:, j], relevant[:, j]) for j in range(scores.shape[1])], dtype=np.float64
    )
    valid = aps[~np.isnan(aps)]
    return (float(valid.mean()) if len(valid) else float("nan")), aps


def precision_at_k(ranked_relevance: list[bool | None], k: int) -> tuple[float, int]:
    """P@k of one ranked list of judgments (None = unjudged, counted as not relevant); and #unjudged."""
    top = ranked_relevance[:k]
    if k <= 0:
        raise ValueError("k must be positive")
    hits = sum(1 for r in top if r)
    unjudged = sum(1 for r in top if r is None)
    return hits / k, unjudged


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(true × predicted) counts."""
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return out


def classification_report(true: np.ndarray, pred: np.ndarray, names: list[str]) -> dict[str, object]:
    """Accuracy, per-class accuracy (recall) and the confusion matrix of a multi-class prediction."""
    cm = confusion_matrix(true, pred, len(names))
    support = cm.sum(axis=1)
    per_class = {name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(names)}
    total = int(cm.sum())
    return {
        "accuracy": float(np.trace(cm) / total) if total else float("nan"),
        "per_class_accuracy": per_class,
        "support": {name: int(s) for name, s in zip(names, support, strict=True)},
        "confusion_matrix": cm.tolist(),
        "n": total,
    }


def multilabel_report(scores: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, object]:
    """Per-label AP and mAP (labels without a positive in this split are reported as None)."""
    m, aps = mean_average_precision(scores, truth)
    return {
        "mAP": m,
        "per_label_ap": {n: (None if np.isnan(a) else float(a)) for n, a in zip(names, aps, strict=True)},
        "positives": {n: int(c) for n, c in zip(names, truth.sum(axis=0), strict=True)},
        "n": len(scores),
    }
