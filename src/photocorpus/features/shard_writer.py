"""Featurize's commits: buffered rows become shards of every set, labels and stage rows, in one transaction.

Rows are buffered up to the driver's shard size (at most ~256 MB) and committed as one transaction:
a new shard per feature set, the labels, the categories and the stage rows. So a kill -9 loses at
most one uncommitted shard, a re-run does exactly what is left, and memory stays bounded by the
shard buffer plus the batches in flight. Before the first commit, :func:`check_compatible` refuses
to append to a set computed by other weights or stored in another dtype.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import feature_store
from photocorpus.features.decode import Decoded
from photocorpus.features.label_rows import LabelRows, write_labels
from photocorpus.features.model_registry import FeaturizeError
from photocorpus.features.pending import ids_in_set
from photocorpus.features.run_report import FeaturizeReport

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = ["ShardBuffer", "ShardWriter", "check_compatible"]


class ShardBuffer:
    """Rows waiting for the next commit: features per set, label rows, stage outcomes."""

    def __init__(self) -> None:
        self.ids: list[np.ndarray] = []
        self.rows: dict[str, list[np.ndarray]] = {}
        self.labels: list[tuple[Any, ...]] = []
        self.categories: list[tuple[Any, ...]] = []
        self.failures: list[Decoded] = []
        self.count = 0

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


class ShardWriter:
    """Commits buffered rows as one transaction: shards of every set, labels, stage rows."""

    def __init__(
        self,
        corpus: Corpus,
        set_names: dict[str, str],  # model output -> feature set
        *,
        model_id: str,
        dtype: str,
        params: dict[str, Any],
        stage: str,
        report: FeaturizeReport,
    ) -> None:
        self.corpus = corpus
        self.set_names = set_names
        self.model_id = model_id
        self.dtype = dtype
        self.params = params
        self.stage = stage
        self.report = report
        self.have = {name: ids_in_set(corpus, name) for name in set_names.values()}
        self.buffer = ShardBuffer()

    def add(self, ids: np.ndarray, outputs: dict[str, np.ndarray], labels: LabelRows | None) -> None:
        buf = self.buffer
        buf.ids.append(ids)
        for output, name in self.set_names.items():
            buf.rows.setdefault(name, []).append(outputs[output].astype(feature_store.DTYPES[self.dtype]))
        if labels is not None:
            buf.labels.extend(labels[0])
            buf.categories.extend(labels[1])
        buf.count += len(ids)

    def fail(self, failures: list[Decoded]) -> None:
        self.buffer.failures.extend(failures)
        self.buffer.count += len(failures)

    def commit(self) -> None:
        buf = self.buffer
        if buf.count == 0:
            return
        ids = np.concatenate(buf.ids) if buf.ids else np.zeros(0, dtype=np.int64)
        with self.corpus.transaction():
            if len(ids):
                for name, parts in buf.rows.items():
                    # A set may already hold some of these photos (e.g. only its sibling was removed):
                    # every set keeps at most one row per photo.
                    new = ~np.isin(ids, self.have[name])
                    if new.any():
                        rows = np.concatenate(parts)[new]
                        feature_store.append_rows(
                            self.corpus, name, ids[new], rows, model_id=self.model_id, dtype=self.dtype,
                            params=self.params,
                        )  # fmt: skip
                write_labels(self.corpus, buf.labels, buf.categories)
                self.corpus.set_stages(ids.tolist(), self.stage, "done")
            for f in buf.failures:
                self.corpus.set_stage(f.photo_id, self.stage, "failed", f.reason, f.detail)
        for name in self.have:
            self.have[name] = np.union1d(self.have[name], ids)
        self.report.computed += len(ids)
        self.report.failed += len(buf.failures)
        for f in buf.failures:
            reason = f.reason or "unknown"
            self.report.failures[reason] = self.report.failures.get(reason, 0) + 1
        self.report.shards += 1
        buf.clear()


def check_compatible(corpus: Corpus, set_names: Iterable[str], model_id: str, dtype: str) -> None:
    """Refuse to append to an existing set of another model id or dtype (its rows would not compare)."""
    for name in set_names:
        try:
            fs = feature_store.open_feature_set(corpus, name)
        except feature_store.FeatureSetNotFoundError:
            continue
        if fs.model_id != model_id:
            raise FeaturizeError(
                f"feature set {name!r} was computed by {fs.model_id}, not {model_id} (other weights or "
                f"settings); mixing them would make rows incomparable. Remove it first with "
                f"`photocorpus features remove {name}`."
            )
        if fs.dtype != dtype:
            raise FeaturizeError(
                f"feature set {name!r} is stored as {fs.dtype}; run with dtype={fs.dtype!r} "
                f"(--dtype {fs.dtype}) or remove it first with `photocorpus features remove {name}`"
            )
