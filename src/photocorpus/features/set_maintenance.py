"""Upkeep of feature sets: compaction and orphan sweeping after a run, listing and removal.

After a complete run each set is compacted into a single shard, so that loading it is one mmap, and
the files a killed run left (shards written but never committed, temp files of dead writers) are
deleted. ``photocorpus features list`` and ``features remove`` (any set, image or text) are here too:
removal takes a model's labels and stage rows with its primary set, so a later run recomputes it
cleanly.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import feature_store
from photocorpus.features.model_registry import stage_name

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = [
    "AUTO_COMPACT_MAX_BYTES",
    "compact_sets",
    "describe_sets",
    "finish_sets",
    "remove_feature_set",
    "sweep_orphans",
]

AUTO_COMPACT_MAX_BYTES = 8 * 2**30  # compaction holds one set in memory; beyond this, ask the user


def finish_sets(corpus: Corpus, names: Sequence[str], *, compact: bool, older_than: float) -> list[str]:
    """After a complete run (or one with nothing left to do): compact, then sweep unregistered files.

    Returns the sets compacted.
    """
    compacted = compact_sets(corpus, names) if compact else []
    for name in names:
        sweep_orphans(corpus, name, older_than=older_than)
    return compacted


def compact_sets(corpus: Corpus, names: Iterable[str]) -> list[str]:
    """Compact each set of several shards into one, up to :data:`AUTO_COMPACT_MAX_BYTES`."""
    done = []
    for name in names:
        try:
            fs = feature_store.open_feature_set(corpus, name)
        except feature_store.FeatureSetNotFoundError:
            continue
        size = fs.rows * fs.dims * np.dtype(feature_store.DTYPES[fs.dtype]).itemsize
        if len(fs.shards) > 1 and size <= AUTO_COMPACT_MAX_BYTES:
            feature_store.compact(corpus, name)
            done.append(name)
    return done


def sweep_orphans(corpus: Corpus, name: str, *, older_than: float) -> None:
    """Delete shard files the registry does not reference: what a kill -9 leaves between writing a shard
    and committing it (re-used numbers are overwritten anyway), and temp files of dead writers. Only
    files older than this run's start are touched, so a concurrent writer's fresh temp file is safe."""
    try:
        fs = feature_store.open_feature_set(corpus, name)
    except feature_store.FeatureSetNotFoundError:
        return
    folder = corpus.abs_path(fs.path)
    keep = {f"{s}{suffix}" for s in fs.shards for suffix in (".npy", ".ids.npy")}
    for path in folder.glob("*.npy"):  # pathlib's * matches hidden names: atomic_path's scratch files too
        if path.name not in keep and path.stat().st_mtime < older_than:
            path.unlink(missing_ok=True)
    for path in folder.glob(".*.tmp"):  # scratch files of earlier versions
        if path.stat().st_mtime < older_than:
            path.unlink(missing_ok=True)


def describe_sets(corpus: Corpus) -> list[dict[str, Any]]:
    """Registry entries plus shard count and bytes on disk, for ``photocorpus features list``."""
    out = []
    for entry in corpus.feature_sets():
        folder = corpus.abs_path(entry["path"])
        size = sum(p.stat().st_size for p in folder.glob("*.npy")) if folder.is_dir() else 0
        out.append(
            {
                "name": entry["name"],
                "model_id": entry["model_id"],
                "dims": entry["dims"],
                "dtype": entry["dtype"],
                "rows": entry["rows"],
                "shards": len(entry["params"].get("shards", [])),
                "bytes": size,
                "updated_at": entry["updated_at"],
            }
        )
    return out


def remove_feature_set(corpus: Corpus, name: str) -> None:
    """Unregister a set and delete its files; for a model's primary set also its labels and stage rows."""
    fs = feature_store.open_feature_set(corpus, name)
    folder = corpus.abs_path(fs.path)
    with corpus.transaction() as conn:
        corpus.unregister_feature_set(name)
        conn.execute("DELETE FROM image_labels WHERE model = ?", (name,))
        conn.execute("DELETE FROM image_categories WHERE model = ?", (name,))
        conn.execute("DELETE FROM stages WHERE stage = ?", (stage_name(name),))
    shutil.rmtree(folder, ignore_errors=True)  # derived from the set's sanitized name: inside features/
