"""ImageNet class names, coarse ontologies over them, and top-k decoding of logits.

Why ontologies: 1000 fine ImageNet classes ("Cardigan (corgi)", "espresso maker") are too sparse to
browse or plot a corpus by; mapping them onto a dozen categories gives usable facets. The mappings
are generated offline from WordNet 3.0 by ``scripts/build_imagenet_ontology.py`` (rules documented
there) and shipped as JSON under ``photocorpus/data``; users can supply their own mapping file.

Deliberately torch-free (numpy + json only): the catalog and CLI import this without paying for torch.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "DEFAULT_KEY",
    "NUM_CLASSES",
    "PRESETS",
    "ImageNetClass",
    "Ontology",
    "OntologyError",
    "imagenet_class_table",
    "imagenet_classes",
    "imagenet_wnids",
    "load_mapping",
    "load_ontology",
    "ontology",
    "softmax",
    "topk",
]

NUM_CLASSES = 1000
PRESETS: tuple[str, ...] = ("coarse", "seed004")
DEFAULT_KEY = "*"  # in a user mapping: category for every class not listed explicitly

_WNID = re.compile(r"^n\d{8}$")


class OntologyError(ValueError):
    """A mapping file or preset is malformed, names unknown classes, or leaves classes unmapped."""


class ImageNetClass(NamedTuple):
    index: int
    wnid: str
    name: str


@dataclass(frozen=True)
class Ontology:
    """A category for each of the 1000 ImageNet classes (``by_index[i]`` is class ``i``'s category)."""

    name: str
    categories: tuple[str, ...]
    by_index: tuple[str, ...]

    def category_ids(self) -> np.ndarray:
        """int array mapping class index -> position in ``categories`` (for vectorised lookups)."""
        lookup = {c: i for i, c in enumerate(self.categories)}
        return np.array([lookup[c] for c in self.by_index], dtype=np.int64)


def _read_data(name: str) -> Any:
    return json.loads(resources.files("photocorpus").joinpath("data", name).read_text(encoding="utf-8"))


@functools.cache
def imagenet_class_table() -> tuple[ImageNetClass, ...]:
    """The 1000 classes in standard (sorted-wnid) order, as shipped in ``imagenet_classes.json``."""
    rows = _read_data("imagenet_classes.json")
    table = tuple(ImageNetClass(int(r["index"]), str(r["wnid"]), str(r["name"])) for r in rows)
    if len(table) != NUM_CLASSES or any(c.index != i for i, c in enumerate(table)):
        raise OntologyError("packaged imagenet_classes.json is corrupt: expected indices 0..999 in order")
    return table


def imagenet_classes() -> list[str]:
    """Human-readable class names by class index (unique, case-insensitively)."""
    return [c.name for c in imagenet_class_table()]


def imagenet_wnids() -> list[str]:
    """WordNet ids (``'n' + WN3.0 noun offset``) by class index."""
    return [c.wnid for c in imagenet_class_table()]


@functools.cache
def _key_index() -> tuple[dict[str, int], dict[str, list[str]]]:
    """Lookup of wnids and lower-cased names -> index, and bare names shared by several classes."""
    index: dict[str, int] = {}
    shared: dict[str, list[str]] = {}
    for c in imagenet_class_table():
        index[c.wnid.lower()] = c.index
        index[c.name.lower()] = c.index
        bare = re.sub(r" \([^)]*\)$", "", c.name).lower()
        if bare != c.name.lower():  # e.g. "crane" for "crane (wading bird)"
            shared.setdefault(bare, []).append(c.name)
    return index, shared


def _resolve_key(key: str) -> int | str:
    """Class index for a wnid or class name, else an explanation of why it matched nothing."""
    index, shared = _key_index()
    k = key.strip().lower()
    if k in index:
        return index[k]
    if k in shared:
        return f"{key!r} is ambiguous; use one of {shared[k]} or the wnid"
    close = difflib.get_close_matches(k, [c.name.lower() for c in imagenet_class_table()], n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    what = "wnid" if _WNID.match(k) else "class name"
    return f"{key!r} is not an ImageNet-1k {what}{hint}"


def _from_mapping(mapping: dict[str, Any], source: str) -> Ontology:
    problems: list[str] = []
    assigned: dict[int, str] = {}
    order: dict[str, None] = {}  # categories in file order, de-duplicated
    default = mapping.get(DEFAULT_KEY)
    for key, category in mapping.items():
        if not isinstance(category, str) or not category.strip():
            problems.append(f"{key!r}: category must be a non-empty string, got {category!r}")
            continue
        if key == DEFAULT_KEY:
            continue
        resolved = _resolve_key(key)
        if isinstance(resolved, str):
            problems.append(resolved)
            continue
        if resolved in assigned and assigned[resolved] != category:
            name = imagenet_class_table()[resolved].name
            problems.append(f"{key!r}: class {name!r} already mapped to {assigned[resolved]!r}")
            continue
        assigned[resolved] = category
        order[category] = None
    if problems:
        shown = "\n  ".join(problems[:15]) + (
            f"\n  ... and {len(problems) - 15} more" if len(problems) > 15 else ""
        )
        raise OntologyError(f"{source}: {len(problems)} invalid entries:\n  {shown}")
    if isinstance(default, str):
        order[default] = None
    else:
        missing = [c.name for c in imagenet_class_table() if c.index not in assigned]
        if missing:
            raise OntologyError(
                f"{source}: {len(missing)} of {NUM_CLASSES} ImageNet classes are unmapped "
                f"(first: {', '.join(repr(m) for m in missing[:8])}); map them or add a "
                f'"{DEFAULT_KEY}": "<category>" entry for the rest'
            )
    by_index = tuple(assigned.get(i, default or "") for i in range(NUM_CLASSES))
    return Ontology(name=source, categories=tuple(order), by_index=by_index)


def _from_generated(payload: dict[str, Any], source: str) -> Ontology:
    """Our own generated format (``{"categories": [...], "classes": [{index, wnid, category}]}``)."""
    classes = payload["classes"]
    wnids = imagenet_wnids()
    if len(classes) != NUM_CLASSES:
        raise OntologyError(f"{source}: lists {len(classes)} classes, expected {NUM_CLASSES}")
    categories = tuple(payload.get("categories") or dict.fromkeys(c["category"] for c in classes))
    by_index: list[str] = []
    for i, row in enumerate(classes):
        if row.get("index") != i or row.get("wnid") != wnids[i]:
            raise OntologyError(
                f"{source}: entry {i} is {row.get('index')}/{row.get('wnid')}, expected {i}/{wnids[i]}"
            )
        if row.get("category") not in categories:
            raise OntologyError(
                f"{source}: class {wnids[i]} has category {row.get('category')!r} not in {categories}"
            )
        by_index.append(row["category"])
    return Ontology(name=str(payload.get("preset", source)), categories=categories, by_index=tuple(by_index))


def load_mapping(path: str | os.PathLike[str]) -> Ontology:
    """Load a user mapping: JSON object ``{wnid or class name: category}``.

    Keys match wnids or the names of :func:`imagenet_classes` case-insensitively. Either map all
    1000 classes or add ``"*": "<category>"`` as the fallback. Unknown or ambiguous keys, conflicting
    duplicates and unmapped classes raise :class:`OntologyError` listing every offending entry, since a
    silently dropped key would quietly skew every downstream count.
    """
    p = Path(path)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        dupes = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        if dupes:  # json.loads would silently keep the last one
            raise OntologyError(f"{p}: duplicate keys {dupes}")
        return dict(pairs)

    try:
        payload = json.loads(p.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise OntologyError(f"{p}: not valid JSON ({exc})") from exc
    if isinstance(payload, dict) and isinstance(payload.get("classes"), list):
        return _from_generated(payload, str(p))
    if not isinstance(payload, dict):
        raise OntologyError(
            f"{p}: expected a JSON object {{wnid or class name: category}}, got {type(payload).__name__}"
        )
    return _from_mapping(payload, str(p))


@functools.cache
def _preset(name: str) -> Ontology:
    return _from_generated(_read_data(f"ontology_{name}.json"), name)


def load_ontology(preset_or_path: str | os.PathLike[str]) -> Ontology:
    """A packaged preset (``"coarse"``, ``"seed004"``) or a user mapping file."""
    if isinstance(preset_or_path, str) and preset_or_path in PRESETS:
        return _preset(preset_or_path)
    p = Path(preset_or_path)
    if not p.is_file():
        raise OntologyError(
            f"{preset_or_path!s}: neither a preset ({', '.join(PRESETS)}) nor an existing file"
        )
    return load_mapping(p)


def ontology(preset_or_path: str | os.PathLike[str]) -> list[str]:
    """Category of each ImageNet class, by class index."""
    return list(load_ontology(preset_or_path).by_index)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (max subtracted, float64 accumulation), returned as float32."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - np.max(x, axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= np.sum(x, axis=axis, keepdims=True)
    return x.astype(np.float32)


def topk(logits: np.ndarray, k: int = 5, *, probs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` class indices and their softmax probabilities, best first.

    Accepts one logit vector ``(C,)`` or a batch ``(N, C)``; outputs have shape ``(k,)`` / ``(N, k)``.
    Ties keep the lower class index first so results are deterministic. ``probs``: the softmax of
    ``logits`` when the caller has computed it already.
    """
    x = np.asarray(logits)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected logits of shape (C,) or (N, C), got {x.shape}")
    if not 1 <= k <= x.shape[-1]:
        raise ValueError(f"k must be in 1..{x.shape[-1]}, got {k}")
    if probs is None:
        probs = softmax(x, axis=-1)
    order = _top_indices(x.reshape(-1, x.shape[-1]), k).reshape(*x.shape[:-1], k)
    return order, np.take_along_axis(probs, order, axis=-1)


def _top_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the ``k`` largest values of ``x`` (N, C), best first, ties by lower index.

    Why not one ``argsort``: sorting all 1000 classes of every photo to keep five was most of the
    featurize driver's label time (3 ms per batch of 32). A partition finds each row's k-th value;
    rows whose values at or above it are exactly k (a tie across the cut, or a NaN, makes them
    more or fewer) only sort those k, the rest fall back to the full stable sort.
    """
    n, c = x.shape
    order = np.empty((n, k), dtype=np.int64)
    simple = np.zeros(n, dtype=bool)
    if 4 * k < c:
        part = np.argpartition(x, c - k, axis=1)[:, c - k :]
        kth = np.take_along_axis(x, part, axis=1).min(axis=1, keepdims=True)
        above = x >= kth
        simple = above.sum(axis=1) == k
        if simple.any():
            cand = np.nonzero(above[simple])[1].reshape(-1, k)  # ascending class index per row
            vals = np.take_along_axis(x[simple], cand, axis=1).astype(np.float64)
            order[simple] = np.take_along_axis(cand, np.argsort(-vals, axis=1, kind="stable"), axis=1)
    rest = ~simple
    if rest.any():
        order[rest] = np.argsort(-x[rest].astype(np.float64), axis=1, kind="stable")[:, :k]
    return order
