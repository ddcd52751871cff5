"""The server's way into the catalog: one connection per worker thread, short read snapshots.

Why a connection per thread and not the one ``Corpus`` connection: Starlette runs our blocking catalog
work in a thread pool, and a SQLite connection serialises everything done through it. With one per
thread, readers never wait for each other, and in WAL mode never for a writer either (``curate`` may
run on the same catalog while the app is open). Each request reads inside one short deferred
transaction (:meth:`CatalogConnections.snapshot`), so a page's count and its rows agree even while a
stage commits between the two queries.

Writes go through :mod:`photocorpus.decisions` (one short ``BEGIN IMMEDIATE`` each); a catalog kept
busy by another writer for longer than :data:`BUSY_TIMEOUT_MS` gives
:class:`~photocorpus.errors.CorpusBusyError`, which the routes answer with 503 and ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from photocorpus.corpus import Corpus

# A web request should not hang for the 30 s a batch stage accepts: after this long the client gets a
# 503 with Retry-After and its request id, and the retry is idempotent.
BUSY_TIMEOUT_MS = 10_000


class CatalogConnections:
    """Per-thread :class:`Corpus` objects on one corpus folder (the first open checks the catalog)."""

    def __init__(self, corpus_path: str | os.PathLike[str], busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.busy_timeout_ms = busy_timeout_ms
        self.root = Path(corpus_path).expanduser().absolute()
        with Corpus.open(self.root):  # checks and migrates once, and fails early on a bad folder
            pass
        self._local = threading.local()
        self._all: list[Corpus] = []
        self._lock = threading.Lock()

    def corpus(self) -> Corpus:
        """This thread's corpus (opened on first use, without the open-time check done above)."""
        corpus = getattr(self._local, "corpus", None)
        if corpus is None:
            corpus = Corpus.open(self.root, check=False)
            corpus.conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            self._local.corpus = corpus
            with self._lock:
                self._all.append(corpus)
        return corpus

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Corpus]:
        """A read transaction: every query inside sees the catalog as of its first read."""
        corpus = self.corpus()
        if corpus.conn.in_transaction:  # a nested use joins the snapshot already open
            yield corpus
            return
        corpus.conn.execute("BEGIN")
        try:
            yield corpus
        finally:
            corpus.conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for corpus in self._all:
                with contextlib.suppress(Exception):
                    corpus.close()
            self._all.clear()
