"""Running shard functions: a local process pool today, the same functions on Ray when asked.

Workers only compute (decode, hash, resize...) and hand back plain values; the driver alone writes the
catalog. Results come back in submission order, so ids and paths are assigned in the same order on
every run, which is what makes an interrupted-then-resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from photocorpus.worker_counts import capped_workers, default_workers

if TYPE_CHECKING:
    from photocorpus.config import ExecutorSettings
    from photocorpus.executors_ray import RayExecutor

T = TypeVar("T")
R = TypeVar("R")


def worker_setup() -> None:
    """Initializer of every photocorpus process pool: ignore Ctrl-C, and exit once the driver is gone.

    The driver owns Ctrl-C: it finishes the current batch and commits, so workers must not die first.
    The watchdog is for a driver killed with SIGKILL: a ``concurrent.futures`` worker waits on its
    call queue, and a spawned worker holds both ends of that pipe, so it never sees end-of-file and
    would wait forever, holding its memory (a featurize worker: an onnxruntime session); every kill
    of a command left its workers behind. A daemon thread waits on the parent's sentinel (a pipe the
    driver holds open for the worker's whole life) and ends the process when it closes. Unlike a
    parent-pid check, this also catches a driver that died while the worker was still starting.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:  # not started by multiprocessing: nothing to watch
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="photocorpus-orphan-watch", daemon=True).start()


def spawn_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[object, ...] = ()
) -> ProcessPoolExecutor:
    """The one way photocorpus starts a process pool: spawned workers, each set up by
    :func:`worker_setup` (Ctrl-C ignored, gone with the driver) and then by ``initializer``.

    Why spawn, not fork: the driver holds threads (progress bars, sqlite, onnxruntime) whose locks
    fork would copy in a locked state. Why here once: the four pools (local executor, fetch render
    pool, featurize decode and inference pools) each set this up by hand, and a pool without the
    watchdog outlived a killed driver.
    """
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_set_up_worker,
        initargs=(initializer, initargs),
    )


def _set_up_worker(initializer: Callable[..., None] | None, initargs: tuple[object, ...]) -> None:
    worker_setup()
    if initializer is not None:
        initializer(*initargs)


def _run_shard(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    return [fn(item) for item in items]


class LocalExecutor:
    """A process pool (``workers`` > 1) or the calling process itself (``workers`` == 1)."""

    def __init__(self, workers: int = 0) -> None:
        # --workers reaches here without passing through the settings' own cap
        self.workers = capped_workers(workers, "--workers") if workers else default_workers()
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalExecutor:
        if self.workers > 1:
            self._pool = spawn_pool(self.workers)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map_batches(
        self, fn: Callable[[T], R], batches: Iterable[Sequence[T]], shard_size: int = 16
    ) -> Iterator[tuple[Sequence[T], list[R]]]:
        """Apply ``fn`` to every item, batch by batch, keeping one batch in flight ahead.

        Yields ``(batch, results)`` in order. While the caller commits one batch, the pool already
        works on the next, so the catalog writes overlap with the CPU work.
        """
        if self._pool is None:
            for batch in batches:
                yield batch, [fn(item) for item in batch]
            return
        pending: deque[tuple[Sequence[T], list[Future[list[R]]]]] = deque()
        for batch in batches:
            shards = [batch[i : i + shard_size] for i in range(0, len(batch), shard_size)]
            pending.append((batch, [self._pool.submit(_run_shard, fn, shard) for shard in shards]))
            if len(pending) > 1:
                yield self._collect(pending.popleft())
        while pending:
            yield self._collect(pending.popleft())

    @staticmethod
    def _collect(entry: tuple[Sequence[T], list[Future[list[R]]]]) -> tuple[Sequence[T], list[R]]:
        batch, futures = entry
        results: list[R] = []
        for fut in futures:
            results.extend(fut.result())
        return batch, results


def open_executor(settings: ExecutorSettings | None = None, workers: int = 0) -> LocalExecutor | RayExecutor:
    """The executor ``settings.kind`` names: a :class:`LocalExecutor` of ``workers`` processes, or a
    :class:`~photocorpus.executors_ray.RayExecutor` (imported only then: Ray is optional)."""
    if settings is not None and settings.kind == "ray":
        from photocorpus.executors_ray import RayExecutor

        return RayExecutor(settings)
    return LocalExecutor(workers)
