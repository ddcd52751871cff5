"""Trained models live in the corpus: ``models/<name>/`` plus a row in the catalog's ``models`` table.

A model folder holds ``model.pt`` (torch state dict), ``model.json`` (everything needed to rebuild and
use it: head shape, classes, text space, feature set), ``metrics.json`` and, for classifiers, a report
page and a confusion-matrix PNG. The catalog row repeats settings and metrics so that ``sqlite3`` and
the report can list models without reading files.

Saving is crash-safe: files are written into ``models/.staging-<random>/``, which is renamed into
place; only then is the catalog row written. Leftover staging folders from a killed run are swept on
the next save. Names are user-chosen, so they go through :func:`photocorpus.corpus_paths.safe_component`.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photocorpus import corpus_paths
from photocorpus.corpus_files import swap_dir
from photocorpus.learn.dataset import LearnError
from photocorpus.records import utc_now

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

MODELS_DIR = "models"
KINDS = ("classifier", "semantic")

# A saved semantic model's format (model.json's "format"; older folders must be retrained). Kept here,
# torch-free, so that search can read a model's description without importing learn/semantic.py.
SEMANTIC_FORMAT_VERSION = 1
# A semantic model that fine-tuned the CNN stores its photos' vectors beside its weights (search
# cannot compute them from the stored features): sorted photo ids and their rows.
PHOTO_IDS_FILE = "photo_ids.npy"
EMBEDDINGS_FILE = "embeddings.npy"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str
    path: str  # corpus-relative folder
    feature_set: str
    settings: dict[str, Any]
    metrics: dict[str, Any]
    created_at: str

    def folder(self, corpus: Corpus) -> Path:
        return corpus.abs_path(self.path)


def model_relpath(name: str) -> str:
    return f"{MODELS_DIR}/{corpus_paths.safe_component(name)}"


def _row_to_entry(row: Any) -> ModelEntry:
    return ModelEntry(
        name=row["name"],
        kind=row["kind"],
        path=row["path"],
        feature_set=row["feature_set"],
        settings=json.loads(row["settings"]),
        metrics=json.loads(row["metrics"]),
        created_at=row["created_at"],
    )


def list_models(corpus: Corpus, kind: str | None = None) -> list[ModelEntry]:
    """Registered models, newest first."""
    sql = "SELECT * FROM models" + (" WHERE kind = ?" if kind else "") + " ORDER BY created_at DESC, name"
    return [_row_to_entry(r) for r in corpus.conn.execute(sql, (kind,) if kind else ())]


def get_model(corpus: Corpus, name: str) -> ModelEntry:
    row = corpus.conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
    if row is None:
        known = ", ".join(m.name for m in list_models(corpus)) or "none yet"
        raise LearnError(
            f"no model {name!r} in {corpus.root} (known: {known}); train one with "
            "`photocorpus train classifier` or `photocorpus train semantic`"
        )
    return _row_to_entry(row)


def _sweep(base: Path) -> None:
    for stale in base.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for pattern in (".old-*", ".*.old-*"):  # a model replaced by a run killed before its cleanup
        for stale in base.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def save_model(
    corpus: Corpus,
    *,
    name: str,
    kind: str,
    feature_set: str,
    settings: dict[str, Any],
    metrics: dict[str, Any],
    write: Callable[[Path], None],
) -> ModelEntry:
    """Write a model's files with ``write(folder)`` and register it, replacing one of the same name."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not name.strip():
        raise LearnError("a model name must not be empty")
    base = corpus.root / MODELS_DIR
    base.mkdir(exist_ok=True)
    _sweep(base)
    rel = model_relpath(name)
    final = corpus.abs_path(rel)
    staging = base / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        write(staging)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True), encoding="utf-8")
        old = swap_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    created = utc_now()
    with corpus.transaction() as conn:
        conn.execute(
            """INSERT INTO models (name, kind, path, feature_set, settings, metrics, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, path = excluded.path,
                   feature_set = excluded.feature_set, settings = excluded.settings,
                   metrics = excluded.metrics, created_at = excluded.created_at""",
            (
                name,
                kind,
                rel,
                feature_set,
                json.dumps(settings, sort_keys=True, default=str),
                json.dumps(metrics, sort_keys=True, default=str),
                created,
            ),
        )
        # Predictions of a replaced model no longer describe it.
        conn.execute("DELETE FROM model_predictions WHERE model = ?", (name,))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return get_model(corpus, name)


def remove_model(corpus: Corpus, name: str) -> None:
    """Unregister a model, then delete its folder."""
    entry = get_model(corpus, name)
    with corpus.transaction() as conn:
        conn.execute("DELETE FROM models WHERE name = ?", (name,))
        conn.execute("DELETE FROM model_predictions WHERE model = ?", (name,))
    shutil.rmtree(entry.folder(corpus), ignore_errors=True)


def read_model_json(corpus: Corpus, entry: ModelEntry) -> dict[str, Any]:
    path = entry.folder(corpus) / "model.json"
    if not path.is_file():
        raise LearnError(f"model {entry.name!r} is registered but {path} is missing; train it again")
    return json.loads(path.read_text(encoding="utf-8"))


def load_saved(
    corpus: Corpus, entry: ModelEntry, kind: str, format_version: int
) -> tuple[dict[str, Any], Any]:
    """(model.json, the weights' state dict) of a saved model, refusing another kind or format.

    The checks come before ``torch.load``, so a wrong name gets a clear message rather than a shape
    error; ``weights_only`` keeps a tampered model file from running code.
    """
    import torch

    if entry.kind != kind:
        raise LearnError(f"model {entry.name!r} is a {entry.kind} model, not a {kind} model")
    info = read_model_json(corpus, entry)
    if int(info.get("format", 0)) != format_version:
        raise LearnError(f"model {entry.name!r} has format {info.get('format')}; train it again")
    state = torch.load(entry.folder(corpus) / "model.pt", map_location="cpu", weights_only=True)
    return info, state
