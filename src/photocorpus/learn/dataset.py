"""Training data from the corpus: feature rows, splits, targets and label files.

Targets come in three kinds:

* ``label``: each photo's primary label (the InstaCities1M city): multi-class;
* ``tags``: the most frequent tags and hashtags, lower-cased: multi-label, weak (user-given);
* ``concepts``: a label file such as MIRFLICKR-25K's ``labels.csv`` (first column names the image,
  one 0/1 column per concept): multi-label.

A label file names images by their file name (``im1.jpg``) or source id; :func:`match_label_file`
accepts either, so the MIRFLICKR protocol works on a corpus imported from the original folder.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import numpy as np

from photocorpus.errors import PhotocorpusError

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.feature_store import FeatureSet

TARGETS = ("label", "tags", "concepts")
MAX_LABEL_FILE_BYTES = 512 * 2**20


class LearnError(PhotocorpusError):
    """A training, search or evaluation run cannot start: missing features, no labels, bad files."""


@dataclass(frozen=True)
class PhotoMeta:
    """Catalog facts about some photos, aligned with ``ids``."""

    ids: np.ndarray
    source_ids: list[str]
    labels: list[str]
    captions: list[str]
    tags: list[list[str]]
    paths: list[str | None]  # corpus-relative image path, None if the photo has no file
    origins: list[str | None]  # where the file came from (import path or URL)


def photo_meta(corpus: Corpus, photo_ids: Sequence[int]) -> PhotoMeta:
    """Look up label, caption, tags and file of each photo (batched; unknown ids get empty values)."""
    ids = [int(i) for i in photo_ids]
    rows: dict[int, tuple[str, str, str, list[str], str | None, str | None]] = {}
    sql = (
        "SELECT p.id, p.source_id, p.primary_label, COALESCE(p.title, ''), COALESCE(p.caption, ''), "
        "p.tags, p.hashtags, f.path, f.origin FROM photos p LEFT JOIN files f ON f.photo_id = p.id "
        "WHERE p.id IN ({marks})"
    )
    for r in corpus.select_in(sql, ids):
        caption = " ".join(t for t in (r[3], r[4]) if t)
        tags = [str(t).lower() for t in (*_json_list(r[5]), *_json_list(r[6])) if str(t).strip()]
        rows[int(r[0])] = (r[1], r[2], caption, list(dict.fromkeys(tags)), r[7], r[8])
    empty = ("", "", "", [], None, None)
    picked = [rows.get(i, empty) for i in ids]
    return PhotoMeta(
        ids=np.asarray(ids, dtype=np.int64),
        source_ids=[p[0] for p in picked],
        labels=[p[1] for p in picked],
        captions=[p[2] for p in picked],
        tags=[p[3] for p in picked],
        paths=[p[4] for p in picked],
        origins=[p[5] for p in picked],
    )


def _json_list(text: str | None) -> list[object]:
    try:
        value = json.loads(text or "[]")
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------------------------------- label files
@dataclass(frozen=True)
class LabelFile:
    """A 0/1 label matrix keyed by image name: ``matrix[i, j]``: does ``keys[i]`` show ``names[j]``."""

    path: str
    keys: list[str]
    names: list[str]
    matrix: np.ndarray  # uint8 (images × labels)


def read_label_file(path: str | os.PathLike[str]) -> LabelFile:
    """Read a CSV label file: a header ``image,<label>,<label>...`` then one row per image of 0/1 values.

    Errors name the file, line and column, because a silently misread label file would skew every
    metric computed from it.
    """
    p = Path(path)
    if not p.is_file():
        raise LearnError(f"label file {p} does not exist")
    if p.stat().st_size > MAX_LABEL_FILE_BYTES:
        raise LearnError(f"label file {p} is larger than {MAX_LABEL_FILE_BYTES // 2**20} MiB; is it a CSV?")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LearnError(f"label file {p} is not UTF-8 text ({exc})") from exc
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header or len(header) < 2:
        raise LearnError(f"{p}: expected a header 'image,<label>,...' with at least one label column")
    names = [h.strip() for h in header[1:]]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise LearnError(f"{p}: label names in the header must be non-empty and unique, got {names}")
    keys: list[str] = []
    values: list[list[int]] = []
    seen: set[str] = set()
    for line_no, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise LearnError(f"{p}:{line_no}: expected {len(header)} columns, got {len(row)}")
        key = row[0].strip()
        if key in seen:
            raise LearnError(f"{p}:{line_no}: image {key!r} is listed twice")
        seen.add(key)
        parsed: list[int] = []
        for name, cell in zip(names, row[1:], strict=True):
            cell = cell.strip()
            if cell not in ("0", "1"):
                raise LearnError(f"{p}:{line_no}: column {name!r} must be 0 or 1, got {cell!r}")
            parsed.append(int(cell))
        keys.append(key)
        values.append(parsed)
    if not keys:
        raise LearnError(f"{p}: no image rows")
    matrix = np.asarray(values, dtype=np.uint8).reshape(len(keys), len(names))
    return LabelFile(path=str(p), keys=keys, names=names, matrix=matrix)


def key_forms(text: str) -> list[str]:
    """Ways a label file may name a photo: as given, and without folders or extension."""
    t = text.strip().replace("\\", "/").lower()
    name = PurePath(t).name
    stem = os.path.splitext(name)[0]
    return list(dict.fromkeys([t, name, stem]))


def match_label_file(labels: LabelFile, meta: PhotoMeta) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the label file for each photo: ``(matrix (n × labels), matched mask (n,))``.

    A photo matches a key by its source id, its original file name, or that name's stem (so
    ``im1.jpg`` finds MIRFLICKR photo 1 imported from ``im1.jpg``).
    """
    index: dict[str, int] = {}
    for row, key in enumerate(labels.keys):
        for form in key_forms(key):
            index.setdefault(form, row)
    out = np.zeros((len(meta.ids), len(labels.names)), dtype=np.uint8)
    matched = np.zeros(len(meta.ids), dtype=bool)
    for i, (sid, origin) in enumerate(zip(meta.source_ids, meta.origins, strict=True)):
        candidates = [sid.lower(), *(key_forms(origin) if origin else [])]
        for cand in candidates:
            row = index.get(cand)
            if row is not None:
                out[i] = labels.matrix[row]
                matched[i] = True
                break
    return out, matched


# ---------------------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Targets:
    """What a classifier learns: class names and, per photo, a class index or a 0/1 row."""

    kind: str  # label | tags | concepts
    multilabel: bool
    names: list[str]
    values: np.ndarray  # int64 class index (multi-class, -1 = none) or float32 0/1 (n × classes)
    has_target: np.ndarray  # bool: photos that take part (labelled / matched)


def build_targets(
    kind: str,
    meta: PhotoMeta,
    train_mask: np.ndarray,
    *,
    labels: LabelFile | None = None,
    top_tags: int = 100,
    min_tag_count: int = 5,
) -> Targets:
    """Targets of ``kind`` for the photos in ``meta``; tag vocabularies are chosen on train photos only."""
    if kind == "label":
        classes = sorted({lab for lab, tr in zip(meta.labels, train_mask, strict=True) if tr and lab})
        if len(classes) < 2:
            raise LearnError(
                f"target='label' needs at least 2 labels among the training photos, found {classes}; "
                "import or harvest photos under several labels (e.g. cities)"
            )
        lookup = {c: i for i, c in enumerate(classes)}
        values = np.array([lookup.get(lab, -1) for lab in meta.labels], dtype=np.int64)
        return Targets("label", False, classes, values, values >= 0)
    if kind == "tags":
        counts = Counter(t for tags, tr in zip(meta.tags, train_mask, strict=True) if tr for t in tags)
        vocab = [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_tag_count]
        vocab = vocab[:top_tags]
        if len(vocab) < 2:
            raise LearnError(
                f"target='tags' needs at least 2 tags used by >= {min_tag_count} training photos, "
                f"found {len(vocab)}; lower min_tag_count or use target='label'"
            )
        lookup = {t: i for i, t in enumerate(vocab)}
        values = np.zeros((len(meta.ids), len(vocab)), dtype=np.float32)
        for i, tags in enumerate(meta.tags):
            for t in tags:
                j = lookup.get(t)
                if j is not None:
                    values[i, j] = 1.0
        return Targets("tags", True, vocab, values, np.array([bool(t) for t in meta.tags]))
    if kind == "concepts":
        if labels is None:
            raise LearnError("target='concepts' needs labels (a CSV such as MIRFLICKR's labels.csv)")
        matrix, matched = match_label_file(labels, meta)
        if not matched.any():
            raise LearnError(
                f"no photo of this corpus matches an image named in {labels.path}; its first column "
                "must hold file names (im1.jpg) or source ids"
            )
        return Targets("concepts", True, list(labels.names), matrix.astype(np.float32), matched)
    raise LearnError(f"unknown target {kind!r}; expected one of {', '.join(TARGETS)}")


# ---------------------------------------------------------------------------------------- features
def open_image_features(corpus: Corpus, name: str | None) -> FeatureSet:
    """The image feature set a model reads (default: the ``[learn] image_features`` setting)."""
    from photocorpus import feature_store

    name = name or corpus.settings.learn.image_features
    if not feature_store.has_feature_set(corpus, name):
        raise LearnError(
            f"no image feature set {name!r} in {corpus.root}; run `photocorpus featurize` first "
            f"(known: {', '.join(e['name'] for e in corpus.feature_sets()) or 'none'})"
        )
    return feature_store.open_feature_set(corpus, name)


def feature_rows(fs: FeatureSet, photo_ids: np.ndarray) -> np.ndarray:
    """float32 rows of ``fs`` for ``photo_ids`` (every id must have a row)."""
    rows = fs.rows_for(photo_ids)
    if len(rows) and rows.min() < 0:
        missing = np.asarray(photo_ids)[rows < 0][:5].tolist()
        raise LearnError(f"photos {missing} have no row in feature set {fs.name!r}")
    order = np.argsort(rows, kind="stable")  # read the memmap front to back
    out = np.empty((len(rows), fs.dims), dtype=np.float32)
    if len(rows):
        out[order] = np.asarray(fs.matrix()[rows[order]], dtype=np.float32)
    return out


def common_ids(*sets: FeatureSet) -> np.ndarray:
    """Sorted photo ids present in every given feature set."""
    ids: np.ndarray | None = None
    for fs in sets:
        mine = np.unique(fs.photo_ids())
        ids = mine if ids is None else np.intersect1d(ids, mine)
    return ids if ids is not None else np.zeros(0, dtype=np.int64)
