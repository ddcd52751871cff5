"""Fetch on a Ray cluster: each task downloads and renders one shard of photos; the driver commits.

The shard function, :func:`fetch_shard`, runs the per-photo code of the local fetch unchanged (the
size preference, redirects, SSRF checks, retries, X-Robots-Tag and expiry rules of
``_FetchRun._try_sizes``, and :func:`~photocorpus.fetch.worker.render_batch` for the pixels). It writes
the rendered JPEGs to the corpus's scratch folder, which every node must see (a shared filesystem),
and returns only the small outcomes: reason, sha256, sizes, the URL used. The driver then commits
them with the local fetch's own ``_commit`` (fsync, intents, rename, one transaction per batch), so
a Ray run and a local run write the same rows and the same files.

With images on an object store (``[storage] images_url``) no node needs a shared filesystem: the
driver reserves each photo's path with a file intent before it sends the shard, the task puts each
JPEG straight at that key, and the driver commits the rows (put-then-commit). Intents of photos that
failed are dropped at commit; those of a shard that was lost stay until the next run, whose first
step deletes whatever the dead task had put.

What dies with a worker is only uncommitted work: its scratch files are swept at the end of the run
(and at the start of the next), and its photos, still without a fetch status, are fetched again by
Ray's retry of the task or by the next run.

Politeness caveat: each task has its own connection limits and per-host pacing, so a host sees up to
(tasks in flight) x ``per_host_connections``; ``host_rate_per_s`` is per task. Use the local executor
for a single polite crawl of one host; Ray pays off against CDNs and many hosts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photocorpus.config import ExecutorSettings, FetchSettings
from photocorpus.fetch.http import ByteBudget, Download, Downloader
from photocorpus.fetch.plan import UrlOption, pending_pages
from photocorpus.fetch.stage import _COMMIT_INTERVAL_S, _PAGE, STORED_FORMAT, _FetchRun, _Outcome
from photocorpus.fetch.worker import render_batch
from photocorpus.imagestore import ObjectStore
from photocorpus.netguard import AddressPolicy

if TYPE_CHECKING:
    from photocorpus.fetch.stage import FetchReport

log = logging.getLogger("photocorpus.fetch")


@dataclass(frozen=True, slots=True)
class ShardOutcome:
    """What a fetch task hands back: one small outcome per photo, plus counters."""

    outcomes: list[_Outcome]
    bytes_downloaded: int


class _ShardFetch(_FetchRun):
    """The per-photo half of :class:`~photocorpus.fetch.stage._FetchRun`, without a catalog.

    Rendering happens in this task's threads (Pillow releases the GIL while decoding and encoding)
    rather than in a second process pool: the task itself is the unit Ray schedules on a CPU.
    """

    def __init__(
        self,
        settings: FetchSettings,
        policy: AddressPolicy,
        tmp_dir: str,
        seed: int | None,
        store: ObjectStore | None = None,
        dests: dict[int, str] | None = None,
    ):
        super().__init__(None, settings, policy, None, None, None, None, None, seed)  # type: ignore[arg-type]
        self._tmp_dir = Path(tmp_dir)
        self._store = store
        self._dests = dests or {}

    async def _render(self, photo_id: int, option: UrlOption, download: Download, retries: int) -> _Outcome:
        assert self._budget is not None and download.body is not None
        data, download.body = download.body, None
        dest = [self._dests[photo_id]] if self._store is not None else None
        try:
            [result] = await asyncio.to_thread(
                render_batch, self.spec, str(self._tmp_dir), [data], self._store, dest
            )
        finally:
            self._budget.release(len(data))
        return _Outcome(photo_id, option, download, result, result.reason, result.detail, retries)

    async def fetch_all(self, items: Sequence[tuple[int, list[UrlOption]]]) -> list[_Outcome]:
        self._budget = ByteBudget(self.settings.max_inflight_mb * 1_000_000)
        slots = asyncio.Semaphore(self.settings.concurrency)
        async with Downloader(self.settings, self.policy, self._budget, self.rng) as downloader:

            async def one(photo_id: int, options: list[UrlOption]) -> _Outcome:
                async with slots:
                    await self._budget.wait_for_room()  # type: ignore[union-attr]
                    return await self._fetch_photo(downloader, photo_id, options)

            return list(await asyncio.gather(*(one(pid, opts) for pid, opts in items)))


def fetch_shard(
    settings: FetchSettings,
    tmp_dir: str,
    items: list[tuple[int, list[UrlOption]]],
    seed: int | None,
    store: ObjectStore | None = None,
    dests: dict[int, str] | None = None,
) -> ShardOutcome:
    """Download and render one shard of photos; never raises for a photo's failure.

    The JPEGs go to ``tmp_dir``, or with ``store`` straight to the reserved catalog paths ``dests``
    (photo id -> ``images/...``) on the object store.
    """
    if store is not None and (dests is None or any(pid not in dests for pid, _ in items)):
        raise ValueError("fetch_shard with a store needs a reserved path for every photo")
    policy = AddressPolicy.build(settings.allow_private_urls, settings.allowed_networks)
    run = _ShardFetch(settings, policy, tmp_dir, seed, store, dests)
    outcomes = asyncio.run(run.fetch_all(items))
    return ShardOutcome(outcomes, run.report.bytes_downloaded)


async def produce_with_ray(
    run: _FetchRun, executor: ExecutorSettings, retry: Sequence[str], fsync_pool: ThreadPoolExecutor
) -> None:
    """The Ray driver loop: plan shards of pending photos, keep the cluster busy, commit in batches."""
    from photocorpus.executors_ray import cluster_cpus, connect, is_system_failure, unwrap_task_error

    ray = connect(executor)
    task = ray.remote(fetch_shard).options(num_cpus=1, max_retries=executor.max_retries)
    max_in_flight = 2 * cluster_cpus(ray)  # one shard running and one queued per CPU
    settings = run.settings
    settings_ref = ray.put(settings.model_copy(update={"allow_private_urls": run.policy.allow_private}))
    store = run.corpus.image_store
    store_ref = ray.put(store) if store is not None else None  # options travel once, in Ray's store
    report: FetchReport = run.report
    in_flight: dict[asyncio.Future[Any], tuple[Any, list[int]]] = {}
    last_commit = time.monotonic()

    async def collect(block: bool) -> None:
        nonlocal last_commit
        if not in_flight:
            return
        done, _ = await asyncio.wait(
            set(in_flight), timeout=None if block else 0, return_when=asyncio.FIRST_COMPLETED
        )
        for fut in done:
            _ref, ids = in_flight.pop(fut)
            try:
                shard: ShardOutcome = fut.result()
            except Exception as exc:
                if not is_system_failure(ray, exc):
                    raise unwrap_task_error(ray, exc) from exc
                if run._stopping():
                    continue  # cancelled by Ctrl-C: pending, not lost
                log.warning(
                    "a fetch shard of %d photos was lost (%s); a re-run will fetch them", len(ids), exc
                )
                report.shards_failed += 1
                continue
            run._done.extend(shard.outcomes)
            report.bytes_downloaded += shard.bytes_downloaded
        now = time.monotonic()
        if len(run._done) >= settings.batch_size or (run._done and now - last_commit >= _COMMIT_INTERVAL_S):
            await run._commit(fsync_pool)
            last_commit = time.monotonic()

    visited = 0
    try:
        for ids, urls in pending_pages(run.corpus, _PAGE, retry, run.limit, run._stopping):
            for lo in range(0, len(ids), executor.shard_size):
                chunk = ids[lo : lo + executor.shard_size]
                while len(in_flight) >= max_in_flight:
                    await collect(block=True)
                if run._stopping():
                    break
                seed = run.rng.randrange(1 << 31)  # each shard's own, reproducible backoff jitter
                items = [(pid, urls.get(pid, [])) for pid in chunk]
                dests = None
                if store is not None:  # intents first: the task puts at these keys before any commit
                    with run.corpus.transaction():
                        dests = {pid: run.corpus.plan_image_path(pid, STORED_FORMAT) for pid in chunk}
                    run._reserved.update(dests)
                ref = task.remote(settings_ref, str(run._tmp_dir), items, seed, store_ref, dests)
                in_flight[asyncio.wrap_future(ref.future())] = (ref, chunk)
                visited += len(chunk)
                await collect(block=False)
        if run._stopping():
            report.interrupted = bool(run.stop)
            for ref, _ids in in_flight.values():
                ray.cancel(ref)
        while in_flight:
            await collect(block=True)
    finally:
        for fut, (ref, _ids) in list(in_flight.items()):
            ray.cancel(ref)
            fut.cancel()
        await run._commit(fsync_pool)
    report.visited = visited
