"""Fetched photos into the catalog: files into ``images/`` and rows into ``catalog.sqlite``, in batches.

:class:`Committer` knows no HTTP: it takes :class:`~photocorpus.fetch.outcome.FetchOutcome` records
(from the local loop or from Ray tasks alike) and commits them exactly like ``import`` does:

1. fsync the scratch files (from threads, so the event loop keeps downloading);
2. reserve every final path with a file intent, in its own transaction, before anything is put there;
3. rename each scratch file into ``images/`` (atomic; one folder lookup per thousand files), or, with
   ``[storage] images_url`` set, put it at its final key on the object store (put-then-commit,
   :mod:`photocorpus.object_store`);
4. record files, EXIF fields, failure statuses, the fetch log and the retry counter in one transaction.

A kill -9 anywhere leaves only whole transactions: a file renamed (or put) without its row is the
path of a dangling intent, which the next run deletes first (:meth:`~photocorpus.corpus.Corpus.
resolve_dangling_intents`); a photo without a fetch status is simply fetched again. So a killed and
resumed run ends in the same corpus as an uninterrupted one.

With Ray and an object store a task puts each JPEG straight at its final key, so the path must be
reserved before the task is sent (:meth:`Committer.reserve_paths`); the intents of photos that then
failed are dropped at their commit, and those of a lost shard stay until the next run deletes
whatever the dead task had put.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from photocorpus import corpus_files
from photocorpus.corpus import Corpus, StoredFile
from photocorpus.exif import store_exif
from photocorpus.fetch.outcome import FetchOutcome, FetchReport
from photocorpus.fetch.plan import STAGE
from photocorpus.object_store import UPLOAD_THREADS, ObjectStore
from photocorpus.records import utc_now

STORED_FORMAT = "JPEG"
# A batch is committed when it is this full (``batch_size``) or this old, whichever comes first: big
# batches amortise the transaction, the interval keeps progress and resume points fresh on slow hosts.
COMMIT_INTERVAL_S = 1.0
FSYNC_THREADS = 4


class Committer:
    """Collects outcomes and commits them in batches; counts what it committed into ``report``.

    Owns the threads that fsync scratch files (or, with an object store, put them: many in flight,
    each waiting on a PUT); :meth:`close` ends them. Only the driver process commits.
    """

    def __init__(
        self,
        corpus: Corpus,
        report: FetchReport,
        batch_size: int,
        advance: Callable[[int], None] | None = None,
    ) -> None:
        self.corpus = corpus
        self.report = report
        self.batch_size = batch_size
        self.advance = advance or (lambda n: None)
        threads = FSYNC_THREADS if corpus.image_store is None else UPLOAD_THREADS
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="fsync")
        self._done: list[FetchOutcome] = []
        self._reserved: dict[int, str] = {}  # photo id -> path reserved before its task was sent
        self._last_commit = time.monotonic()

    def close(self) -> None:
        self._threads.shutdown(wait=True)

    def add(self, outcomes: Iterable[FetchOutcome]) -> None:
        """Queue outcomes for the next commit."""
        self._done.extend(outcomes)

    def due(self) -> bool:
        """Whether the queued outcomes make a full batch, or have waited long enough."""
        return len(self._done) >= self.batch_size or (
            bool(self._done) and time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S
        )

    def reserve_paths(self, photo_ids: Sequence[int]) -> dict[int, str]:
        """Reserve each photo's final path with a file intent now, before a task puts the file there."""
        corpus = self.corpus
        with corpus.transaction():
            dests = {pid: corpus.plan_image_path(pid, STORED_FORMAT) for pid in photo_ids}
        self._reserved.update(dests)
        return dests

    async def commit(self) -> None:
        """Commit every queued outcome (see the module docstring for the steps and why)."""
        batch, self._done = self._done, []
        if batch:
            await self._commit(batch)
        self._last_commit = time.monotonic()

    async def _commit(self, batch: list[FetchOutcome]) -> None:
        corpus = self.corpus
        store = corpus.image_store
        stored = [o for o in batch if o.ok]
        loop = asyncio.get_running_loop()
        if store is None:
            await asyncio.gather(
                *(loop.run_in_executor(self._threads, _fsync, o.result.tmp_path) for o in stored if o.result)
            )
        with corpus.transaction():  # 1. intents: each path reserved before anything is put there
            paths = {
                o.photo_id: (o.result and o.result.stored_path)
                or corpus.plan_image_path(o.photo_id, STORED_FORMAT)
                for o in stored
            }
        if store is None:  # 2. atomic renames into images/
            folders: dict[str, Path] = {}  # checked once per folder, not per file (a thousand share one)
            for o in stored:
                assert o.result is not None and o.result.tmp_path is not None
                folder, _, name = paths[o.photo_id].rpartition("/")
                if folder not in folders:
                    folders[folder] = corpus.abs_path(folder)
                corpus_files.place(Path(o.result.tmp_path), folders[folder] / name)
        else:  # 2. object puts at the final keys (a Ray task may have put its own already)
            await asyncio.gather(
                *(
                    loop.run_in_executor(self._threads, _upload, store, paths[o.photo_id], o.result.tmp_path)
                    for o in stored
                    if o.result is not None and o.result.tmp_path is not None
                )
            )
        now = utc_now()
        retries = sum(o.retries for o in batch)
        with corpus.transaction() as conn:
            for o in stored:
                r = o.result
                assert r is not None
                corpus.commit_file(
                    o.photo_id,
                    StoredFile(
                        path=paths[o.photo_id],
                        sha256=r.sha256,
                        width=r.width or 0,
                        height=r.height or 0,
                        bytes=r.stored_bytes or 0,
                        format=STORED_FORMAT,
                        original_width=r.original_width,
                        original_height=r.original_height,
                        original_bytes=r.original_bytes,
                        origin=o.url,
                        http_status=o.http_status,
                        frame_removed=r.frame_removed,
                    ),
                    stage=STAGE,
                )
                if r.exif:
                    store_exif(corpus, o.photo_id, r.exif, "file")
            for o in batch:
                if not o.ok:
                    corpus.set_stage(o.photo_id, STAGE, "failed", o.reason or "unknown", o.detail)
            conn.executemany(
                """INSERT OR REPLACE INTO fetch_log (photo_id, size_key, url, http_status, bytes, sha256,
                       retries, elapsed_ms, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [_log_row(o, now) for o in batch],
            )
            if retries:
                corpus.bump_counter(STAGE, "retries", retries)
        reserved = [self._reserved.pop(o.photo_id) for o in batch if o.photo_id in self._reserved]
        used = set(paths.values())
        unused = [p for p in reserved if p not in used]
        if unused:  # paths reserved ahead (Ray + object store) for photos that then failed
            corpus.drop_intents(unused)
        report = self.report
        report.fetched += len(stored)
        report.failed += len(batch) - len(stored)
        report.retries += retries
        report.frames_removed += sum(1 for o in stored if o.result and o.result.frame_removed)
        for o in batch:
            if not o.ok:
                key = o.reason or "unknown"
                report.failures[key] = report.failures.get(key, 0) + 1
        self.advance(len(batch))


def _log_row(o: FetchOutcome, now: str) -> tuple[object, ...]:
    r = o.result
    return (
        o.photo_id,
        o.size_key,
        o.url,
        o.http_status,
        r.original_bytes if r else None,
        r.sha256 if r else None,
        o.retries,
        round(o.elapsed_s * 1000) if o.elapsed_s is not None else None,
        now,
    )


def _fsync(path: str | None) -> None:
    if path is None:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _upload(store: ObjectStore, relpath: str, tmp_path: str) -> None:
    """Put a rendered scratch file at its final key, then drop the scratch copy."""
    store.put_file(relpath, tmp_path)
    with contextlib.suppress(OSError):
        os.unlink(tmp_path)
