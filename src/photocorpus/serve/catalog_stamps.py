"""Catalog stamps: cheap ids that change whenever a human decision could change a cached answer.

Decisions are append-only (an undo is a decision of its own), so the newest decision id is a stamp
every process reads the same way, in one index lookup. It is kept per *filter family*, so that a
decision invalidates exactly the answers it can change:

- decision-free filters (source, dates, caption, licence, ImageNet class, category, cluster, stage,
  ids) and the sort orders: no decision writes the columns they read, so their stamp is constant;
- ``label``: only ``set_label`` (and an ``undo``, which may revert one) rewrites ``photo_labels``;
- everything read from ``curation`` or from the decisions themselves (split, dup, flag, bot,
  excluded, reviewed): any decision may change it (an exclusion clears a split, a bot verdict may
  exclude, a duplicate decision regroups; every decision marks its photos reviewed).
"""

from __future__ import annotations

from collections.abc import Iterable

from photocorpus.corpus import Corpus

DECISION_FREE = frozenset(
    {"source", "date_from", "date_to", "has_caption", "license", "imagenet", "category", "cluster",
     "stage", "status", "reason", "ids"}
)  # fmt: skip
LABEL_KINDS = ("set_label", "undo")


def newest_decision(corpus: Corpus) -> int:
    """The id of the newest decision of any kind (0 before the first)."""
    return int(corpus.conn.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0])


def newest_label_decision(corpus: Corpus) -> int:
    """The newest decision that may have changed a photo's labels (index decisions_by_kind)."""
    newest = 0
    for kind in LABEL_KINDS:
        row = corpus.conn.execute("SELECT MAX(id) FROM decisions WHERE kind = ?", (kind,)).fetchone()
        newest = max(newest, int(row[0] or 0))
    return newest


class Stamps:
    """The stamps of one request, each read at most once (inside the request's read snapshot)."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self._any: int | None = None
        self._label: int | None = None

    def any_decision(self) -> int:
        if self._any is None:
            self._any = newest_decision(self.corpus)
        return self._any

    def label_decision(self) -> int:
        if self._label is None:
            self._label = newest_label_decision(self.corpus)
        return self._label

    def for_filters(self, names: Iterable[str]) -> tuple[int, int]:
        """The stamp of an answer that depends on these filters: ``(label, any)`` parts, 0 where
        the filters do not depend on that family."""
        names = set(names) - DECISION_FREE
        label = self.label_decision() if "label" in names else 0
        rest = self.any_decision() if names - {"label"} else 0
        return (label, rest)
