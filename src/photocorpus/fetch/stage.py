"""``photocorpus fetch``: download every harvested photo not yet fetched, render it, store it.

The shape of a run:

* the driver (one asyncio loop) walks the photos still to do in id order (:mod:`.plan`) and keeps up
  to ``concurrency`` of them in flight, while the byte budget has room;
* each photo's URLs are tried best first (:class:`.http.Downloader`: redirects, SSRF checks,
  retries with backoff, Retry-After, X-Robots-Tag, size and time limits);
* its bytes go to a worker process that decodes, de-frames, resizes and writes the JPEG to the
  scratch folder (:mod:`.worker`);
* finished photos are committed in batches, exactly like ``import``: fsync the scratch files,
  reserve their paths with intents, rename them into ``images/``, then record files, statuses and the
  fetch log in one transaction. With ``[storage] images_url`` set, the rename is an object put at
  the final key instead (put-then-commit, :mod:`photocorpus.imagestore`).

A kill -9 anywhere leaves only whole transactions; the next run deletes files of dangling intents,
sweeps the scratch folder and picks up the photos still without a status, so it ends in the same
corpus as an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing
import os
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from photocorpus import reasons, storage
from photocorpus.config import ExecutorSettings, FetchSettings
from photocorpus.corpus import Corpus, StoredFile
from photocorpus.enrich.exif import store_exif
from photocorpus.errors import ConfigError, StorageError
from photocorpus.executors import default_workers
from photocorpus.fetch.http import ByteBudget, Download, Downloader
from photocorpus.fetch.plan import STAGE, UrlOption, candidate_urls, count_pending, pending_pages
from photocorpus.fetch.plan import retry_reasons as resolve_retry_reasons
from photocorpus.fetch.politeness import url_expired
from photocorpus.fetch.spec import Geometry, RenderSpec
from photocorpus.fetch.worker import RenderResult, init_worker, render_batch
from photocorpus.imagestore import UPLOAD_THREADS, ObjectStore
from photocorpus.netguard import AddressPolicy
from photocorpus.notebook import HtmlReport
from photocorpus.records import utc_now

log = logging.getLogger("photocorpus.fetch")

STORED_FORMAT = "JPEG"
_PAGE = 512  # photo ids read from the catalog at a time
_COMMIT_INTERVAL_S = 1.0
_FSYNC_THREADS = 4
_MAX_BATCH = 8  # images per worker call
# A failure of one size that says nothing about the photo's other sizes: try the next size.
_STOP_TRYING = frozenset({reasons.BLOCKED_URL, reasons.DISALLOWED_BY_X_ROBOTS_TAG, reasons.URL_EXPIRED})


@dataclass(slots=True)
class FetchReport(HtmlReport):
    """What one fetch run did."""

    visited: int = 0
    fetched: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    bytes_downloaded: int = 0
    frames_removed: int = 0
    peak_inflight_bytes: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0
    retried_reasons: list[str] = field(default_factory=list)
    executor: str = "local"
    shards_failed: int = 0  # Ray shards lost after Ray's retries: their photos stay pending for a re-run


@dataclass(slots=True)
class _Outcome:
    photo_id: int
    option: UrlOption | None
    download: Download | None
    result: RenderResult | None = None
    reason: str | None = None
    detail: str | None = None
    retries: int = 0

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok


def parse_size(text: str) -> tuple[int, int]:
    """``"300x300"`` -> ``(300, 300)``, with a message that says what is expected."""
    try:
        w, h = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like 300x300 (width x height in pixels), not {text!r}") from None
    if not (1 <= w <= 65_535 and 1 <= h <= 65_535):
        raise ConfigError(f"--size {text!r}: width and height must be between 1 and 65535")
    return w, h


def render_spec(settings: FetchSettings) -> RenderSpec:
    """The worker-side rendering rules of a settings object."""
    if settings.size:
        width, height = parse_size(settings.size)
    else:
        width = height = settings.max_edge_px
    return RenderSpec(
        geometry=Geometry(width, height, settings.resize_mode),
        jpeg_quality=settings.jpeg_quality,
        resample=settings.resample,
        min_side_px=settings.min_side_px,
        min_aspect_ratio=settings.min_aspect_ratio,
        max_aspect_ratio=settings.max_aspect_ratio,
        remove_frames=settings.remove_frames,
        frame_score_max=settings.frame_score_max,
        frame_margin_px=settings.frame_margin_px,
        frame_contiguous=settings.frame_contiguous,
        max_pixels=settings.max_image_pixels,
        reencode_unchanged=settings.reencode_unchanged,
    )


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
    run = _FetchRun(corpus, settings, policy, retry_failed, limit, stop, advance, on_total, seed)
    run.executor = executor or corpus.settings.executor
    run.report.executor = run.executor.kind
    return asyncio.run(run.run())


class _FetchRun:
    def __init__(
        self,
        corpus: Corpus,
        settings: FetchSettings,
        policy: AddressPolicy,
        retry_failed: Sequence[str] | None,
        limit: int | None,
        stop: object | None,
        advance: Callable[[int], None] | None,
        on_total: Callable[[int], None] | None,
        seed: int | None,
    ) -> None:
        self.corpus = corpus
        self.settings = settings
        self.policy = policy
        self.retry_requested = retry_failed
        self.limit = limit
        self.stop = stop
        self.advance = advance or (lambda n: None)
        self.on_total = on_total
        self.rng = random.Random(seed)
        self.spec = render_spec(settings)
        self.report = FetchReport()
        self.workers = settings.workers or default_workers()
        self._done: list[_Outcome] = []
        self._fatal: BaseException | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._pool_generation = 0
        self._queue: deque[_RenderItem] = deque()
        self._calls = 0  # worker calls in flight
        self._tmp_dir: Path | None = None
        self._budget: ByteBudget | None = None
        self._reserved: dict[int, str] = {}  # photo id -> path reserved before its task was sent
        self.executor = ExecutorSettings()

    # ------------------------------------------------------------------ driver
    async def run(self) -> FetchReport:
        started = time.monotonic()
        corpus = self.corpus
        corpus.resolve_dangling_intents()
        self._tmp_dir = corpus.tmp_dir()
        retry = resolve_retry_reasons(corpus, self.retry_requested)
        self.report.retried_reasons = list(retry)
        total = count_pending(corpus, retry)
        if self.limit is not None:
            total = min(total, self.limit)
        if self.on_total:
            self.on_total(total)
        self._budget = ByteBudget(self.settings.max_inflight_mb * 1_000_000)
        ray = self.executor.kind == "ray"
        if not ray:
            self._start_pool()
        # fsyncs of scratch files, or uploads to the object store (many in flight: each waits on a PUT)
        threads = _FSYNC_THREADS if corpus.image_store is None else UPLOAD_THREADS
        fsync_pool = ThreadPoolExecutor(threads, thread_name_prefix="fsync")
        try:
            if ray:
                from photocorpus.fetch.distributed import produce_with_ray

                await produce_with_ray(self, self.executor, retry, fsync_pool)
            else:
                async with Downloader(self.settings, self.policy, self._budget, self.rng) as downloader:
                    await self._produce(downloader, retry, fsync_pool)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            fsync_pool.shutdown(wait=True)
            _cleanup_tmp(self._tmp_dir)
            self.report.elapsed_s = time.monotonic() - started
            self.report.peak_inflight_bytes = self._budget.peak
        if self._fatal is not None:
            raise self._fatal
        return self.report

    async def _produce(
        self, downloader: Downloader, retry: Sequence[str], fsync_pool: ThreadPoolExecutor
    ) -> None:
        assert self._budget is not None
        slots = asyncio.Semaphore(self.settings.concurrency)
        in_flight: set[asyncio.Task[_Outcome]] = set()
        last_commit = time.monotonic()

        def finished(task: asyncio.Task[_Outcome]) -> None:
            in_flight.discard(task)
            slots.release()
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                self._fatal = self._fatal or exc
            else:
                self._done.append(task.result())

        visited = 0
        try:
            for ids, urls in pending_pages(self.corpus, _PAGE, retry, self.limit, self._stopping):
                for photo_id in ids:
                    await slots.acquire()
                    await self._budget.wait_for_room()
                    if self._stopping():
                        slots.release()
                        break
                    task = asyncio.create_task(
                        self._fetch_photo(downloader, photo_id, urls.get(photo_id, []))
                    )
                    in_flight.add(task)
                    task.add_done_callback(finished)
                    visited += 1
                    now = time.monotonic()
                    if len(self._done) >= self.settings.batch_size or (
                        self._done and now - last_commit >= _COMMIT_INTERVAL_S
                    ):
                        await self._commit(fsync_pool)
                        last_commit = time.monotonic()
            if self._stopping():
                self.report.interrupted = bool(self.stop)
                for task in in_flight:
                    task.cancel()
            while in_flight:
                await asyncio.wait(set(in_flight), timeout=_COMMIT_INTERVAL_S)
                await self._commit(fsync_pool)
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            await self._commit(fsync_pool)
        self.report.visited = visited

    def _stopping(self) -> bool:
        return bool(self.stop) or self._fatal is not None

    # ------------------------------------------------------------------ one photo
    async def _fetch_photo(self, downloader: Downloader, photo_id: int, options: list[UrlOption]) -> _Outcome:
        try:
            return await self._try_sizes(downloader, photo_id, options)
        except (StorageError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug must cost one photo, not the run; it is logged in full
            log.exception("photo %d: unexpected error", photo_id)
            return _Outcome(photo_id, None, None, reason=reasons.INTERNAL_ERROR, detail=repr(exc)[:300])

    async def _try_sizes(self, downloader: Downloader, photo_id: int, options: list[UrlOption]) -> _Outcome:
        assert self._budget is not None
        candidates = candidate_urls(options, self.settings)
        if not candidates:
            return _Outcome(
                photo_id, None, None, reason=reasons.NO_URL, detail="the source gave no image URL"
            )
        small: tuple[UrlOption, Download] | None = None
        failure: tuple[UrlOption, Download] | None = None
        retries = 0
        try:
            for index, option in enumerate(candidates):
                download = await downloader.fetch(option.url)
                retries += download.retries
                self.report.bytes_downloaded += len(download.body or b"")
                if download.ok:
                    assert download.body is not None
                    last = index == len(candidates) - 1
                    if len(download.body) < self.settings.min_preferred_bytes and not last:
                        # Flickr's "photo unavailable" placeholder is tiny: try the next size, keep this one
                        log.debug(
                            "photo %d: %s is only %d bytes, trying the next size",
                            photo_id,
                            option.size_key,
                            len(download.body),
                        )
                        if small is not None:
                            self._budget.release(len(small[1].body or b""))
                        small = (option, download)
                        continue
                    return await self._render(photo_id, option, download, retries)
                if download.reason == reasons.http_reason(403) and url_expired(
                    option.url, option.harvested_at, self.settings.url_expiry_age_h
                ):
                    download.detail = (
                        f"HTTP 403 on a signed URL past its expiry ({download.detail}); re-harvest"
                    )
                    download.reason = reasons.URL_EXPIRED
                if failure is None or (
                    reasons.is_transient(download.reason) and not reasons.is_transient(failure[1].reason)
                ):
                    failure = (option, download)
                if download.reason in _STOP_TRYING or reasons.is_transient(download.reason):
                    break
            if small is not None:
                option, download = small
                small = None
                return await self._render(photo_id, option, download, retries)
        finally:
            if small is not None:
                self._budget.release(len(small[1].body or b""))
        assert failure is not None
        option, download = failure
        return _Outcome(
            photo_id, option, download, reason=download.reason, detail=download.detail, retries=retries
        )

    async def _render(self, photo_id: int, option: UrlOption, download: Download, retries: int) -> _Outcome:
        assert self._budget is not None and download.body is not None
        size = len(download.body)
        item = _RenderItem(download.body, asyncio.get_running_loop().create_future())
        download.body = None  # the queue holds the bytes now; the outcome must not keep them alive
        self._queue.append(item)
        self._dispatch()
        try:
            result = await item.future
        finally:
            self._budget.release(size)
        return _Outcome(photo_id, option, download, result, result.reason, result.detail, retries)

    # ------------------------------------------------------------------ worker pool
    def _dispatch(self) -> None:
        """Hand queued images to the pool in small batches, keeping two calls per worker in flight.

        Batches grow with the queue (up to _MAX_BATCH): when workers are the bottleneck the pool's
        per-call cost is shared by several images, and when they are idle an image goes at once.
        """
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        restarted = False
        while self._queue and self._calls < 2 * self.workers:
            if self._queue[0].solo:
                items = [self._queue.popleft()]
            else:
                size = min(_MAX_BATCH, max(1, -(-len(self._queue) // self.workers)))
                items = []
                while self._queue and len(items) < size and not self._queue[0].solo:
                    items.append(self._queue.popleft())
            items = [i for i in items if not i.future.done()]
            if not items:
                continue
            try:
                call = self._pool.submit(render_batch, self.spec, str(self._tmp_dir), [i.data for i in items])
            except BrokenProcessPool:
                # A worker died and the pool knows it before our callbacks for its calls have run:
                # start the new pool here (those callbacks then see an old generation and only requeue
                # their images) and hand these images to it. Twice in a row means the pool cannot start.
                if restarted:
                    raise
                restarted = True
                log.warning("a worker process died; restarting the pool")
                self._queue.extendleft(reversed(items))
                self._start_pool()
                continue
            self._calls += 1
            generation = self._pool_generation

            def done(
                call: Future[list[RenderResult]], items: list[_RenderItem] = items, gen: int = generation
            ) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is gone: the run is over anyway
                    loop.call_soon_threadsafe(self._batch_done, call, items, gen)

            call.add_done_callback(done)

    def _batch_done(
        self, call: Future[list[RenderResult]], items: list[_RenderItem], generation: int
    ) -> None:
        self._calls -= 1
        try:
            results = call.result()
        except BrokenProcessPool:
            # A worker died (a decoder crash, the OOM killer): start a new pool and render each image of
            # the batch on its own; an image that kills a worker on its own is recorded, not retried.
            log.warning("a worker process died; restarting the pool")
            if generation == self._pool_generation:
                self._start_pool()
            for item in reversed(items):
                if item.solo:
                    digest = hashlib.sha256(item.data).hexdigest()
                    detail = "the decoder process died on this image"
                    _resolve(
                        item,
                        RenderResult(
                            False, digest, len(item.data), reason=reasons.CORRUPT_IMAGE, detail=detail
                        ),
                    )
                else:
                    item.solo = True
                    self._queue.appendleft(item)
        except CancelledError:
            for item in items:
                item.future.cancel()
        except BaseException as exc:  # StorageError (disk full...): the run must stop and say so
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
        else:
            for item, result in zip(items, results, strict=True):
                _resolve(item, result)
        if self._pool is not None:
            self._dispatch()

    def _start_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker
        )
        self._pool_generation += 1
        for _ in range(self.workers):  # start the workers now, while the first downloads run
            self._pool.submit(_noop)

    # ------------------------------------------------------------------ commit
    async def _commit(self, fsync_pool: ThreadPoolExecutor) -> None:
        batch, self._done = self._done, []
        if not batch:
            return
        corpus = self.corpus
        store = corpus.image_store
        stored = [o for o in batch if o.ok]
        loop = asyncio.get_running_loop()
        if store is None:
            await asyncio.gather(
                *(loop.run_in_executor(fsync_pool, _fsync, o.result.tmp_path) for o in stored if o.result)
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
                storage.place(Path(o.result.tmp_path), folders[folder] / name)
        else:  # 2. object puts at the final keys (a Ray task may have put its own already)
            await asyncio.gather(
                *(
                    loop.run_in_executor(fsync_pool, _upload, store, paths[o.photo_id], o.result.tmp_path)
                    for o in stored
                    if o.result is not None and o.result.tmp_path is not None
                )
            )
        now = utc_now()
        retries = sum(o.retries for o in batch)
        with corpus.transaction() as conn:
            for o in stored:
                r, d = o.result, o.download
                assert r is not None and d is not None
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
                        origin=d.url,
                        http_status=d.status,
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


@dataclass(slots=True)
class _RenderItem:
    data: bytes
    future: asyncio.Future[RenderResult]
    solo: bool = False  # render alone: its batch killed a worker


def _resolve(item: _RenderItem, result: RenderResult) -> None:
    if not item.future.done():
        item.future.set_result(result)


def _noop() -> None:
    """Submitted once per worker to start the processes early."""


def _log_row(o: _Outcome, now: str) -> tuple[object, ...]:
    d, r = o.download, o.result
    return (
        o.photo_id,
        o.option.size_key if o.option else None,
        d.url if d else None,
        d.status if d else None,
        r.original_bytes if r else None,
        r.sha256 if r else None,
        o.retries,
        round(d.elapsed_s * 1000) if d else None,
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


def _cleanup_tmp(tmp_dir: Path | None) -> None:
    if tmp_dir is None:
        return
    for leftover in tmp_dir.glob("*"):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        tmp_dir.rmdir()
