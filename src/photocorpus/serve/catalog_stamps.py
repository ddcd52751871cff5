"""Catalog stamps: cheap values that change whenever a human decision could change a cached answer.

Decisions are append-only (an undo is a decision of its own), so the newest decision id *of each
kind* is a stamp every server process reads the same way from the catalog. An answer is stamped with
the kinds that can change it (:data:`KINDS_CHANGING`, from what :mod:`photocorpus.decision_effects`
writes), so a decision invalidates exactly the answers it can change:

- decision-free filters (source, dates, caption, licence, ImageNet class, category, cluster, stage,
  quality flag, ids) and the sort orders: no decision writes the columns they read;
- ``label``: ``set_label`` rewrites ``photo_labels`` and ``primary_label``;
- ``dup``: the three duplicate decisions regroup;
- ``excluded`` and ``split``: an exclusion or inclusion, a bot or quality verdict (which may
  exclude), a duplicate decision (a duplicate is excluded, a photo that stops being one comes back);
- ``reviewed``: every decision marks the photos it names;
- an ``undo`` may revert any of these, so it changes every filter a decision can change.
"""

from __future__ import annotations

from collections.abc import Iterable

from photocorpus.corpus import Corpus
from photocorpus.decision_log import KINDS, PAIR_KINDS

EXCLUDING_KINDS = ("exclude", "include", "set_bot", "set_quality", *PAIR_KINDS)
KINDS_CHANGING: dict[str, tuple[str, ...]] = {
    "label": ("set_label", "undo"),
    "dup": (*PAIR_KINDS, "undo"),
    "bot": ("set_bot", "undo"),
    "excluded": (*EXCLUDING_KINDS, "undo"),
    "split": (*EXCLUDING_KINDS, "undo"),
    "reviewed": KINDS,
}
# The review queues: what each shows (groups, flags) and its "reviewed" marks.
QUEUE_KINDS: dict[str, tuple[str, ...]] = {
    "duplicates": (*PAIR_KINDS, "undo"),
    "bots": ("set_bot", "undo"),
    "quality": ("set_quality", "undo"),
}


class Stamps:
    """The newest decision id of each kind, read once per request (inside its read snapshot)."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self._newest: dict[str, int] | None = None

    def newest(self) -> dict[str, int]:
        if self._newest is None:
            rows = self.corpus.conn.execute("SELECT kind, MAX(id) FROM decisions GROUP BY kind")
            self._newest = {str(kind): int(newest) for kind, newest in rows}
        return self._newest

    def of_kinds(self, kinds: Iterable[str]) -> tuple[int, ...]:
        """The stamp of an answer these decision kinds can change."""
        newest = self.newest()
        return tuple(newest.get(kind, 0) for kind in sorted(set(kinds)))

    def for_filters(self, names: Iterable[str]) -> tuple[int, ...]:
        """The stamp of an answer that depends on these filters (``()`` for decision-free ones)."""
        kinds = {kind for name in names for kind in KINDS_CHANGING.get(name, ())}
        return self.of_kinds(kinds) if kinds else ()
