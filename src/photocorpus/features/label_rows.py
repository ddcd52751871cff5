"""ImageNet labels and ontology categories as catalog rows: ``image_labels`` and ``image_categories``.

For classifiers with 1000 ImageNet outputs, featurize stores the top-5 classes of every photo with
their softmax probabilities and names in ``image_labels``, and in ``image_categories`` the category
of the top-1 class (seed 004's rule) under the ``coarse`` and ``seed004`` ontologies and any user
mapping, with the category's total probability mass (``mass``) as a confidence. The class names and
the ontologies themselves are :mod:`photocorpus.imagenet_labels`; this module turns logits into
rows, and :func:`assign_categories` recomputes one ontology later from the stored logits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import feature_store
from photocorpus.features.model_registry import DEFAULT_MODEL, FeaturizeError
from photocorpus.imagenet_labels import (
    PRESETS,
    Ontology,
    OntologyError,
    imagenet_class_table,
    load_ontology,
    softmax,
    topk,
)

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = [
    "TOP_K",
    "LabelRows",
    "NamedOntology",
    "assign_categories",
    "label_rows",
    "load_ontologies",
    "named_ontology",
    "write_labels",
]

TOP_K = 5

# (image_labels rows, image_categories rows), in the tables' column order
LabelRows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class NamedOntology:
    """An ontology under the name its rows carry, with its class -> category lookup precomputed."""

    name: str
    ontology: Ontology
    onehot: np.ndarray  # (1000, C) float32: class -> category indicator
    category_ids: np.ndarray  # (1000,)


def named_ontology(spec: str | os.PathLike[str]) -> NamedOntology:
    """A preset (``coarse``, ``seed004``) or a mapping file, named after the preset or the file's stem."""
    try:
        onto = load_ontology(spec)
    except OntologyError as exc:  # a ValueError; ours is a one-line CLI error naming every bad key
        raise FeaturizeError(str(exc)) from exc
    if isinstance(spec, str) and spec in PRESETS:
        name = spec
    else:
        stem = Path(spec).stem
        name = f"user-{stem}" if stem in PRESETS else stem
    cat_ids = onto.category_ids()
    onehot = np.zeros((len(cat_ids), len(onto.categories)), dtype=np.float32)
    onehot[np.arange(len(cat_ids)), cat_ids] = 1.0
    return NamedOntology(name, onto, onehot, cat_ids)


def load_ontologies(extra: Sequence[str | os.PathLike[str]]) -> list[NamedOntology]:
    """The presets plus ``extra`` mapping files; two with the same name would mix their rows."""
    found = [named_ontology(p) for p in (*PRESETS, *extra)]
    names = [o.name for o in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FeaturizeError(f"two ontologies share the name(s) {dupes}; rename the mapping files")
    return found


def label_rows(
    model: str, ids: np.ndarray, logits: np.ndarray, ontologies: Sequence[NamedOntology]
) -> LabelRows:
    """Rows for ``image_labels`` (top-5 per photo) and ``image_categories`` (one per ontology)."""
    table = imagenet_class_table()
    probs_all = softmax(logits)
    top, top_probs = topk(logits, TOP_K, probs=probs_all)
    labels = [
        (int(pid), model, rank + 1, int(c), table[c].wnid, table[c].name, float(p))
        for pid, classes, probs in zip(ids, top, top_probs, strict=True)
        for rank, (c, p) in enumerate(zip(classes, probs, strict=True))
    ]
    categories: list[tuple[Any, ...]] = []
    for onto in ontologies:
        mass = probs_all @ onto.onehot  # (N, C)
        top1_cat = onto.category_ids[top[:, 0]]
        for i, pid in enumerate(ids):
            c = int(top1_cat[i])
            categories.append((int(pid), model, onto.name, onto.ontology.categories[c], float(mass[i, c])))
    return labels, categories


def write_labels(corpus: Corpus, labels: list[tuple[Any, ...]], categories: list[tuple[Any, ...]]) -> None:
    """Insert or replace the rows (inside the caller's transaction when there is one)."""
    with corpus.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO image_labels (photo_id, model, rank, class_index, wnid, class_name, "
            "prob) VALUES (?, ?, ?, ?, ?, ?, ?)",
            labels,
        )
        conn.executemany(
            "INSERT OR REPLACE INTO image_categories (photo_id, model, ontology, category, mass) "
            "VALUES (?, ?, ?, ?, ?)",
            categories,
        )


def assign_categories(
    corpus: Corpus,
    ontology: str | os.PathLike[str],
    *,
    model: str = DEFAULT_MODEL,
    chunk_rows: int = 8192,
) -> int:
    """(Re)compute one ontology's categories for every photo from the stored ``<model>.logits`` set.

    Lets a user add their own mapping file later without running the CNN again. Returns the number
    of photos categorised.
    """
    onto = named_ontology(ontology)
    fs = feature_store.open_feature_set(corpus, f"{model}.logits")
    if fs.dims != len(imagenet_class_table()):
        raise FeaturizeError(f"{fs.name} has {fs.dims} outputs, not the 1000 ImageNet classes")
    ids = fs.photo_ids()
    matrix = fs.matrix()
    for start in range(0, len(ids), chunk_rows):
        logits = np.asarray(matrix[start : start + chunk_rows], dtype=np.float32)
        _labels, cats = label_rows(model, ids[start : start + chunk_rows], logits, [onto])
        write_labels(corpus, [], cats)
    return len(ids)
