"""``photocorpus fetch``: download every harvested photo not yet fetched, render it, store it.

The shape of a run, one module per role:

* the driver (one asyncio loop, here) walks the photos still to do in id order
  (:func:`.plan.pending_pages`) and keeps up to ``concurrency`` of them in flight, while the byte
  budget has room;
* each photo goes through :class:`.fetcher.PhotoFetcher`: its URLs are tried best first
  (:class:`.http.Downloader`: redirects, SSRF checks, retries with backoff, Retry-After, X-Robots-Tag,
  size and time limits), and its bytes go to a worker process that decodes, de-frames, resizes and
  writes the JPEG to the scratch folder (:class:`.render_pool.RenderPool`, :mod:`.worker`), with the
  photo's provenance embedded when ``embed_provenance`` names its source (read from the catalog a page
  at a time here, :func:`photocorpus.catalog_provenance.load_provenance`, and carried with the photo);
* finished photos are committed in batches by :class:`.committer.Committer`, exactly like ``import``:
  fsync the scratch files, reserve their paths with intents, rename them into ``images/``, then record
  files, statuses and the fetch log in one transaction. With ``[storage] images_url`` set, the rename
  is an object put at the final key instead (put-then-commit, :mod:`photocorpus.object_store`).

With ``[executor] kind = "ray"`` the same walk, fetcher and committer run as Ray tasks and a driver
loop in :mod:`.distributed`; this module only chooses it.

A kill -9 anywhere leaves only whole transactions; the next run deletes files of dangling intents,
sweeps the scratch folder and picks up the photos still without a status, so it ends in the same
corpus as an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from photocorpus.catalog_provenance import load_provenance
from photocorpus.config import ExecutorSettings, FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.fetch.committer import COMMIT_INTERVAL_S, Committer
from photocorpus.fetch.distributed import fetch_with_ray
from photocorpus.fetch.fetcher import PhotoFetcher
from photocorpus.fetch.http import ByteBudget, Downloader
from photocorpus.fetch.outcome import FetchOutcome, FetchReport
from photocorpus.fetch.plan import PAGE_SIZE, count_pending, pending_pages
from photocorpus.fetch.plan import retry_reasons as resolve_retry_reasons
from photocorpus.fetch.render_pool import RenderPool
from photocorpus.fetch.spec import RenderSpec, render_spec
from photocorpus.netguard import AddressPolicy
from photocorpus.worker_counts import default_workers

__all__ = ["FetchReport", "fetch_photos"]


def fetch_photos(
    corpus: Corpus,
    settings: FetchSettings | None = None,
    *,
    retry_failed: Sequence[str] | None = None,
    limit: int | None = None,
    allow_private_urls: bool | None = None,
    stop: object | None = None,
    advance: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    seed: int | None = None,
    executor: ExecutorSettings | None = None,
) -> FetchReport:
    """Fetch every photo still to do (see :mod:`photocorpus.fetch.plan`); return what happened.

    ``retry_failed``: ``None`` retries nothing, ``[]`` the failures that could be transient, a list
    exactly those reasons. ``stop`` is checked between photos (a :class:`~photocorpus.interrupt.StopFlag`);
    ``advance(n)`` is called as photos are committed; ``on_total(n)`` once the work is counted.
    ``executor`` (default: the corpus's ``[executor]``) may run downloads and renders as Ray tasks
    (:mod:`photocorpus.fetch.distributed`); the catalog is written here either way.
    """
    settings = settings or corpus.settings.fetch
    policy = AddressPolicy.build(
        settings.allow_private_urls or bool(allow_private_urls), settings.allowed_networks
    )
    spec = render_spec(settings)  # a bad --size fails here, before the catalog is touched
    run = _Run(
        corpus=corpus,
        settings=settings,
        policy=policy,
        spec=spec,
        executor=executor or corpus.settings.executor,
        rng=random.Random(seed),
        limit=limit,
        stop=stop,
        advance=advance,
    )
    return asyncio.run(run.run(retry_failed, on_total))


class _Run:
    """One fetch run's settings and shared state (private: the loops below are its only users)."""

    def __init__(
        self,
        *,
        corpus: Corpus,
        settings: FetchSettings,
        policy: AddressPolicy,
        spec: RenderSpec,
        executor: ExecutorSettings,
        rng: random.Random,
        limit: int | None,
        stop: object | None,
        advance: Callable[[int], None] | None,
    ) -> None:
        self.corpus = corpus
        self.settings = settings
        self.policy = policy
        self.spec = spec
        self.executor = executor
        self.rng = rng
        self.limit = limit
        self.stop = stop
        self.advance = advance
        self.report = FetchReport(executor=executor.kind)

    async def run(
        self, retry_failed: Sequence[str] | None, on_total: Callable[[int], None] | None
    ) -> FetchReport:
        started = time.monotonic()
        corpus, settings, report = self.corpus, self.settings, self.report
        corpus.resolve_dangling_intents()
        tmp_dir = corpus.tmp_dir()
        retry = resolve_retry_reasons(corpus, retry_failed)
        report.retried_reasons = list(retry)
        total = count_pending(corpus, retry)
        if self.limit is not None:
            total = min(total, self.limit)
        if on_total:
            on_total(total)
        budget = ByteBudget(settings.max_inflight_mb * 1_000_000)
        ray = self.executor.kind == "ray"
        pool = None
        if not ray:
            pool = RenderPool(self.spec, tmp_dir, settings.workers or default_workers())
            pool.start()
        committer = Committer(corpus, report, settings.batch_size, self.advance)
        try:
            if ray:
                await fetch_with_ray(
                    corpus,
                    committer,
                    settings,
                    self.policy,
                    self.executor,
                    tmp_dir,
                    retry=retry,
                    limit=self.limit,
                    stop=self.stop,
                    rng=self.rng,
                )
            else:
                assert pool is not None
                async with Downloader(settings, self.policy, budget, self.rng) as downloader:
                    fetcher = PhotoFetcher(settings, downloader, pool.render)
                    try:
                        await self.fetch_locally(fetcher, committer, retry)
                    finally:
                        report.bytes_downloaded += fetcher.bytes_downloaded
        finally:
            if pool is not None:
                pool.shutdown()
            committer.close()
            _cleanup_tmp(tmp_dir)
            report.elapsed_s = time.monotonic() - started
            report.peak_inflight_bytes = budget.peak
        return report

    async def fetch_locally(self, fetcher: PhotoFetcher, committer: Committer, retry: Sequence[str]) -> None:
        """The local loop: photos in id order, ``concurrency`` in flight, commits as batches fill.

        A photo's failure is an outcome; only a storage failure (or a bug in this loop) stops the run,
        after committing everything already finished, and is raised at the end.
        """
        slots = asyncio.Semaphore(self.settings.concurrency)
        in_flight: set[asyncio.Task[FetchOutcome]] = set()
        fatal: list[BaseException] = []

        def stopping() -> bool:
            return bool(self.stop) or bool(fatal)

        def finished(task: asyncio.Task[FetchOutcome]) -> None:
            in_flight.discard(task)
            slots.release()
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                if not fatal:
                    fatal.append(exc)
            else:
                committer.add([task.result()])

        visited = 0
        try:
            for ids, urls in pending_pages(self.corpus, PAGE_SIZE, retry, self.limit, stopping):
                stamps = load_provenance(self.corpus, ids, self.settings.embed_provenance)
                for photo_id in ids:
                    await slots.acquire()
                    await fetcher.budget.wait_for_room()
                    if stopping():
                        slots.release()
                        break
                    task = asyncio.create_task(
                        fetcher.fetch_photo(photo_id, urls.get(photo_id, []), stamps.get(photo_id))
                    )
                    in_flight.add(task)
                    task.add_done_callback(finished)
                    visited += 1
                    if committer.due():
                        await committer.commit()
            if stopping():
                self.report.interrupted = bool(self.stop)
                for task in in_flight:
                    task.cancel()
            while in_flight:
                await asyncio.wait(set(in_flight), timeout=COMMIT_INTERVAL_S)
                await committer.commit()
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            await committer.commit()
        self.report.visited = visited
        if fatal:
            raise fatal[0]


def _cleanup_tmp(tmp_dir: Path | None) -> None:
    """Sweep the scratch folder: files of photos that were rendered but never committed."""
    if tmp_dir is None:
        return
    for leftover in tmp_dir.glob("*"):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        tmp_dir.rmdir()
