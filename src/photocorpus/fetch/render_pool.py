"""The local fetch's renderer: a pool of worker processes fed small batches of downloaded images.

The driver (one asyncio loop) downloads; the pixels are worked on in spawned processes
(:func:`~photocorpus.fetch.worker.render_batch`), so decoding never blocks the downloads and the
driver never imports Pillow. A worker that dies (a decoder crash, the OOM killer) costs at most the
image that killed it: the pool is restarted and the images of the lost batch are rendered again, each
on its own, and an image that kills a worker on its own is recorded as ``corrupt_image``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from photocorpus import reasons
from photocorpus.executors import spawn_pool
from photocorpus.fetch.spec import RenderSpec
from photocorpus.fetch.worker import RenderResult, init_worker, render_batch
from photocorpus.provenance import Provenance

log = logging.getLogger("photocorpus.fetch")

MAX_BATCH = 8  # images per worker call


@dataclass(slots=True)
class _RenderItem:
    data: bytes
    future: asyncio.Future[RenderResult]
    stamp: Provenance | None = None  # embedded by the worker as it writes the file
    solo: bool = False  # render alone: its batch killed a worker


class RenderPool:
    """Renders downloaded images in worker processes; ``await pool.render(photo_id, data)``.

    :meth:`start` spawns the workers at once, so that they load the imaging code while the first
    downloads are still running; :meth:`shutdown` ends them. The renderer of
    :class:`~photocorpus.fetch.fetcher.PhotoFetcher` in the local fetch.
    """

    def __init__(self, spec: RenderSpec, tmp_dir: Path, workers: int) -> None:
        self.spec = spec
        self.tmp_dir = tmp_dir
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._generation = 0
        self._queue: deque[_RenderItem] = deque()
        self._calls = 0  # worker calls in flight

    def start(self) -> None:
        """(Re)start the worker processes; a new pool supersedes a broken one."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = spawn_pool(self.workers, init_worker)
        self._generation += 1
        for _ in range(self.workers):  # start the workers now, while the first downloads run
            self._pool.submit(_noop)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    async def render(self, photo_id: int, data: bytes, stamp: Provenance | None = None) -> RenderResult:
        """The rendered file in the scratch folder (with ``stamp`` embedded), or a reason; raises what a
        worker raised for a storage failure (:class:`~photocorpus.errors.StorageError`), which must
        stop the run."""
        item = _RenderItem(data, asyncio.get_running_loop().create_future(), stamp)
        self._queue.append(item)
        self._dispatch()
        return await item.future

    def _dispatch(self) -> None:
        """Hand queued images to the pool in small batches, keeping two calls per worker in flight.

        Batches grow with the queue (up to MAX_BATCH): when workers are the bottleneck the pool's
        per-call cost is shared by several images, and when they are idle an image goes at once.
        """
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        restarted = False
        while self._queue and self._calls < 2 * self.workers:
            if self._queue[0].solo:
                items = [self._queue.popleft()]
            else:
                size = min(MAX_BATCH, max(1, -(-len(self._queue) // self.workers)))
                items = []
                while self._queue and len(items) < size and not self._queue[0].solo:
                    items.append(self._queue.popleft())
            items = [i for i in items if not i.future.done()]
            if not items:
                continue
            try:
                call = self._pool.submit(
                    render_batch,
                    self.spec,
                    str(self.tmp_dir),
                    [i.data for i in items],
                    stamps=[i.stamp for i in items],
                )
            except BrokenProcessPool:
                # A worker died and the pool knows it before our callbacks for its calls have run:
                # start the new pool here (those callbacks then see an old generation and only requeue
                # their images) and hand these images to it. Twice in a row means the pool cannot start.
                if restarted:
                    raise
                restarted = True
                log.warning("a worker process died; restarting the pool")
                self._queue.extendleft(reversed(items))
                self.start()
                continue
            self._calls += 1
            generation = self._generation

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
            if generation == self._generation:
                self.start()
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


def _resolve(item: _RenderItem, result: RenderResult) -> None:
    if not item.future.done():
        item.future.set_result(result)


def _noop() -> None:
    """Submitted once per worker to start the processes early."""
