"""Retrieval evaluation: mAP of label queries (the MIRFlickr protocol) and P@k of free queries.

* **Label queries.** For each concept of a label file (``labels.csv``), the concept's name (or a query
  given for it) ranks every photo of the evaluated split, and AP is computed against the file's 0/1
  column. The mean over concepts is the mAP that the paper reports on MIRFlickr-25K.
* **Free queries.** Queries without labels (the paper's 24 InstaCities1M queries ship built in as
  ``instacities``) are scored by P@k against a judgments file ``query,photo,relevant``; results
  nobody has judged yet count as not relevant and are listed (``--unjudged FILE`` writes them as a
  CSV template to fill in and pass back). That template holds queries and source ids and is meant
  to be opened in a spreadsheet, so its cells go through :func:`photocorpus.textsafety.csv_safe_cell`
  and :func:`read_judgments` restores them.

Query files: one query per line; ``#`` starts a comment; ``label<TAB>query`` ties a query to a label
column (otherwise the query text itself names the column).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus.learn.dataset import (
    LabelFile,
    LearnError,
    key_forms,
    match_label_file,
    photo_meta,
)
from photocorpus.learn.metrics import average_precision, precision_at_k, ranking
from photocorpus.learn.query import parse_query, query_vector
from photocorpus.learn.splits import assign_splits, resolve_spec
from photocorpus.textsafety import csv_safe_cell, restore_csv_cell

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.learn.search import Searcher
    from photocorpus.learn.text_space import Encoder

BUILTIN_QUERIES = ("instacities",)
MAX_QUERY_FILE_BYTES = 4 * 2**20


@dataclass(frozen=True)
class QuerySpec:
    text: str
    label: str | None = None  # the label column it is judged against (label queries)
    group: str = ""  # e.g. simple / complex for the InstaCities1M list


def read_queries(spec: str | os.PathLike[str]) -> list[QuerySpec]:
    """A built-in list (``instacities``) or a query file (see the module docstring)."""
    if str(spec) == "instacities":
        from photocorpus.learn.instacities_queries import QUERIES

        return [QuerySpec(text=q, group=g) for g, q in QUERIES]
    path = Path(spec)
    if not path.is_file():
        raise LearnError(f"queries {spec}: neither a built-in list ({', '.join(BUILTIN_QUERIES)}) nor a file")
    if path.stat().st_size > MAX_QUERY_FILE_BYTES:
        raise LearnError(f"query file {path} is larger than {MAX_QUERY_FILE_BYTES // 2**20} MiB")
    out: list[QuerySpec] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        label, _, text = line.partition("\t") if "\t" in line else ("", "", line)
        text = text.strip()
        try:
            parse_query(text)
        except LearnError as exc:
            raise LearnError(f"{path}:{line_no}: {exc}") from exc
        out.append(QuerySpec(text=text, label=label.strip() or None))
    if not out:
        raise LearnError(f"query file {path} holds no queries")
    return out


def read_judgments(path: str | os.PathLike[str]) -> dict[str, dict[str, bool]]:
    """``query -> {photo key -> relevant}`` from a CSV with header ``query,photo,relevant`` (0/1)."""
    p = Path(path)
    if not p.is_file():
        raise LearnError(f"judgments file {p} does not exist")
    out: dict[str, dict[str, bool]] = {}
    with open(p, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"query", "photo", "relevant"} <= set(reader.fieldnames):
            raise LearnError(f"{p}: expected a header with columns query,photo,relevant")
        for line_no, row in enumerate(reader, start=2):
            value = (row.get("relevant") or "").strip()
            if value == "":
                continue  # a template row nobody has judged yet
            if value not in ("0", "1"):
                raise LearnError(f"{p}:{line_no}: relevant must be 0 or 1, got {value!r}")
            forms = key_forms(restore_csv_cell(row.get("photo") or ""))
            bucket = out.setdefault(restore_csv_cell((row.get("query") or "").strip()), {})
            for form in forms:
                bucket[form] = value == "1"
    return out


def _photo_key(meta_source_id: str, origin: str | None) -> list[str]:
    return [meta_source_id.lower(), *(key_forms(origin) if origin else [])]


def _split_ids(corpus: Corpus, ids: np.ndarray, split: str, spec: str | None) -> np.ndarray:
    if split == "all":
        return ids
    if split not in ("train", "val", "test"):
        raise LearnError(f"on must be train, val, test or all, not {split!r}")
    resolved = resolve_spec(corpus, spec or corpus.settings.learn.splits)
    assigned = assign_splits(corpus, ids, resolved)
    chosen = ids[assigned == split]
    if not len(chosen):
        raise LearnError(f"no photos in the {split} split ({resolved.describe()}); try on='all' (--on all)")
    return chosen


def concept_map_for_embeddings(
    corpus: Corpus, labels: LabelFile, photo_ids: np.ndarray, joint: np.ndarray, encode: Encoder
) -> dict[str, Any]:
    """mAP of concept-name queries over given photos and their joint-space vectors."""
    meta = photo_meta(corpus, photo_ids.tolist())
    truth, matched = match_label_file(labels, meta)
    scores_for = {name: joint[matched] @ query_vector(parse_query(name), encode) for name in labels.names}
    return _label_map(labels.names, [QuerySpec(n, n) for n in labels.names], scores_for, truth[matched])


def _label_map(
    names: Sequence[str],
    queries: Sequence[QuerySpec],
    scores_for: dict[str, np.ndarray],
    truth: np.ndarray,
) -> dict[str, Any]:
    per_query: dict[str, Any] = {}
    aps = []
    for q in queries:
        column = names.index(q.label or q.text)
        ap = average_precision(scores_for[q.text], truth[:, column])
        per_query[q.text] = {
            "label": q.label or q.text,
            "ap": None if np.isnan(ap) else round(ap, 4),
            "positives": int(truth[:, column].sum()),
        }
        if not np.isnan(ap):
            aps.append(ap)
    return {"mAP": float(np.mean(aps)) if aps else None, "queries": per_query, "photos": len(truth)}


def evaluate_label_queries(
    corpus: Corpus,
    searcher: Searcher,
    labels: LabelFile,
    queries: Sequence[QuerySpec] | None = None,
    *,
    on: str = "test",
    split: str | None = None,
) -> dict[str, Any]:
    """mAP of label queries over the photos of split ``on`` that the label file names."""
    from photocorpus import feature_store

    queries = list(queries) if queries else [QuerySpec(text=n, label=n) for n in labels.names]
    for q in queries:
        if (q.label or q.text) not in labels.names:
            raise LearnError(
                f"query {q.text!r} names no label column of {labels.path} ({', '.join(labels.names)}); "
                "write 'label<TAB>query' in the query file"
            )
    fs_name = (
        searcher.semantic.info["image_features"] if searcher.semantic else searcher.bridge.logits_set  # type: ignore[union-attr]
    )
    ids = np.unique(feature_store.open_feature_set(corpus, fs_name).photo_ids())
    ids = _split_ids(corpus, ids, on, split)
    meta = photo_meta(corpus, ids.tolist())
    truth, matched = match_label_file(labels, meta)
    if not matched.any():
        raise LearnError(f"no photo of the {on} split is named in {labels.path}")
    ids, truth = ids[matched], truth[matched]
    scores_for = {q.text: np.nan_to_num(searcher.score_photos(q.text, ids), nan=-np.inf) for q in queries}
    result = _label_map(labels.names, queries, scores_for, truth)
    result.update(method=searcher.method, on=on)
    return result


def evaluate_judged_queries(
    corpus: Corpus,
    searcher: Searcher,
    queries: Sequence[QuerySpec],
    judgments: dict[str, dict[str, bool]],
    *,
    k: int = 5,
    on: str = "test",
    split: str | None = None,
) -> dict[str, Any]:
    """P@k of each query over split ``on``; unjudged results are counted and returned for judging."""
    from photocorpus import feature_store

    fs_name = (
        searcher.semantic.info["image_features"] if searcher.semantic else searcher.bridge.logits_set  # type: ignore[union-attr]
    )
    ids = np.unique(feature_store.open_feature_set(corpus, fs_name).photo_ids())
    ids = _split_ids(corpus, ids, on, split)
    per_query: dict[str, Any] = {}
    unjudged: list[dict[str, str]] = []
    groups: dict[str, list[float]] = {}
    for q in queries:
        scores = np.nan_to_num(searcher.score_photos(q.text, ids), nan=-np.inf)
        top = ids[ranking(scores)[:k]]
        meta = photo_meta(corpus, top.tolist())
        judged = judgments.get(q.text, {})
        rel: list[bool | None] = []
        for sid, origin, path in zip(meta.source_ids, meta.origins, meta.paths, strict=True):
            verdict = next((judged[key] for key in _photo_key(sid, origin) if key in judged), None)
            rel.append(verdict)
            if verdict is None:
                unjudged.append({"query": q.text, "photo": sid, "relevant": "", "path": path or ""})
        p, missing = precision_at_k(rel, k)
        per_query[q.text] = {
            "precision": round(p, 4),
            "unjudged": missing,
            "group": q.group,
            "top": meta.source_ids,
        }
        groups.setdefault("all", []).append(p)
        if q.group:
            groups.setdefault(q.group, []).append(p)
    return {
        "k": k,
        "method": searcher.method,
        "on": on,
        f"mean_P@{k}": {g: round(float(np.mean(v)), 4) for g, v in groups.items()},
        "queries": per_query,
        "unjudged": unjudged,
    }


def write_unjudged(path: str | os.PathLike[str], rows: Sequence[dict[str, str]]) -> None:
    """A judgments template: the unjudged results, ``relevant`` left blank for a person to fill."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["query", "photo", "relevant", "path"])
        writer.writeheader()
        writer.writerows({key: csv_safe_cell(value) for key, value in row.items()} for row in rows)
