"""Fetch on a Ray cluster: each task downloads and renders one shard of photos; the driver commits.

Built from the same public pieces as the local loop (:mod:`.stage`), so a Ray run and a local run
write the same rows and the same files:

* the walk, :func:`~photocorpus.fetch.plan.pending_pages` (id order, keyset paging, the limit);
* the shard function, :func:`fetch_shard`, runs :class:`~photocorpus.fetch.fetcher.PhotoFetcher` (the
  size preference, redirects, SSRF checks, retries, X-Robots-Tag and expiry rules) with
  :func:`~photocorpus.fetch.worker.render_batch` for the pixels. It writes the rendered JPEGs to the
  corpus's scratch folder, which every node must see (a shared filesystem), and returns only the small
  outcomes: reason, sha256, sizes, the URL used;
* the provenance stamps, read by the driver a page at a time
  (:func:`~photocorpus.catalog_provenance.load_provenance`) and sent with each shard, so a task embeds
  the same bytes a local worker does without opening the catalog;
* the driver, :func:`fetch_with_ray`, commits them with
  :class:`~photocorpus.fetch.committer.Committer` (fsync, intents, rename, one transaction per batch).

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
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photocorpus.catalog_provenance import load_provenance
from photocorpus.config import ExecutorSettings, FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.fetch.committer import Committer
from photocorpus.fetch.fetcher import PhotoFetcher
from photocorpus.fetch.http import ByteBudget, Downloader
from photocorpus.fetch.outcome import FetchOutcome
from photocorpus.fetch.plan import PAGE_SIZE, UrlOption, pending_pages
from photocorpus.fetch.spec import RenderSpec, render_spec
from photocorpus.fetch.worker import RenderResult, render_batch
from photocorpus.netguard import AddressPolicy
from photocorpus.object_store import ObjectStore
from photocorpus.provenance import Provenance

log = logging.getLogger("photocorpus.fetch")


@dataclass(frozen=True, slots=True)
class ShardOutcome:
    """What a fetch task hands back: one small outcome per photo, plus counters."""

    outcomes: list[FetchOutcome]
    bytes_downloaded: int


class _ThreadRenderer:
    """The Ray task's renderer: in this task's threads (Pillow releases the GIL while decoding and
    encoding) rather than in a second process pool, since the task itself is the unit Ray schedules
    on a CPU."""

    def __init__(
        self, spec: RenderSpec, tmp_dir: str, store: ObjectStore | None, dests: dict[int, str]
    ) -> None:
        self.spec = spec
        self.tmp_dir = tmp_dir
        self.store = store
        self.dests = dests

    async def __call__(self, photo_id: int, data: bytes, stamp: Provenance | None = None) -> RenderResult:
        dest = [self.dests[photo_id]] if self.store is not None else None
        [result] = await asyncio.to_thread(
            render_batch, self.spec, self.tmp_dir, [data], self.store, dest, [stamp]
        )
        return result


def fetch_shard(
    settings: FetchSettings,
    tmp_dir: str,
    items: list[tuple[int, list[UrlOption]]],
    seed: int | None,
    store: ObjectStore | None = None,
    dests: dict[int, str] | None = None,
    stamps: dict[int, Provenance] | None = None,
) -> ShardOutcome:
    """Download and render one shard of photos; never raises for a photo's failure.

    The JPEGs go to ``tmp_dir``, or with ``store`` straight to the reserved catalog paths ``dests``
    (photo id -> ``images/...``) on the object store; ``stamps`` (photo id -> provenance, read by the
    driver) is embedded into each photo's file.
    """
    if store is not None and (dests is None or any(pid not in dests for pid, _ in items)):
        raise ValueError("fetch_shard with a store needs a reserved path for every photo")
    policy = AddressPolicy.build(settings.allow_private_urls, settings.allowed_networks)
    renderer = _ThreadRenderer(render_spec(settings), str(Path(tmp_dir)), store, dests or {})
    return asyncio.run(_fetch_all(settings, policy, renderer, items, stamps or {}, random.Random(seed)))


async def _fetch_all(
    settings: FetchSettings,
    policy: AddressPolicy,
    renderer: _ThreadRenderer,
    items: Sequence[tuple[int, list[UrlOption]]],
    stamps: dict[int, Provenance],
    rng: random.Random,
) -> ShardOutcome:
    budget = ByteBudget(settings.max_inflight_mb * 1_000_000)
    slots = asyncio.Semaphore(settings.concurrency)
    async with Downloader(settings, policy, budget, rng) as downloader:
        fetcher = PhotoFetcher(settings, downloader, renderer)

        async def one(photo_id: int, options: list[UrlOption]) -> FetchOutcome:
            async with slots:
                await budget.wait_for_room()
                return await fetcher.fetch_photo(photo_id, options, stamps.get(photo_id))

        outcomes = list(await asyncio.gather(*(one(pid, opts) for pid, opts in items)))
    return ShardOutcome(outcomes, fetcher.bytes_downloaded)


async def fetch_with_ray(
    corpus: Corpus,
    committer: Committer,
    settings: FetchSettings,
    policy: AddressPolicy,
    executor: ExecutorSettings,
    tmp_dir: Path,
    *,
    retry: Sequence[str],
    limit: int | None,
    stop: object | None,
    rng: random.Random,
) -> None:
    """The Ray driver loop: plan shards of pending photos, keep the cluster busy, commit in batches.

    ``stop`` is checked between shards; a shard cancelled by it is pending, not lost. The counts go to
    ``committer.report``.
    """
    from photocorpus.executors_ray import cluster_cpus, connect, is_system_failure, unwrap_task_error

    ray = connect(executor)
    task = ray.remote(fetch_shard).options(num_cpus=1, max_retries=executor.max_retries)
    max_in_flight = 2 * cluster_cpus(ray)  # one shard running and one queued per CPU
    settings_ref = ray.put(settings.model_copy(update={"allow_private_urls": policy.allow_private}))
    store = corpus.image_store
    store_ref = ray.put(store) if store is not None else None  # options travel once, in Ray's store
    report = committer.report
    in_flight: dict[asyncio.Future[Any], tuple[Any, list[int]]] = {}

    def stopping() -> bool:
        return bool(stop)

    async def collect(block: bool) -> None:
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
                if stopping():
                    continue  # cancelled by Ctrl-C: pending, not lost
                log.warning(
                    "a fetch shard of %d photos was lost (%s); a re-run will fetch them", len(ids), exc
                )
                report.shards_failed += 1
                continue
            committer.add(shard.outcomes)
            report.bytes_downloaded += shard.bytes_downloaded
        if committer.due():
            await committer.commit()

    visited = 0
    try:
        for ids, urls in pending_pages(corpus, PAGE_SIZE, retry, limit, stopping):
            page_stamps = load_provenance(corpus, ids, settings.embed_provenance)
            for lo in range(0, len(ids), executor.shard_size):
                chunk = ids[lo : lo + executor.shard_size]
                while len(in_flight) >= max_in_flight:
                    await collect(block=True)
                if stopping():
                    break
                seed = rng.randrange(1 << 31)  # each shard's own, reproducible backoff jitter
                items = [(pid, urls.get(pid, [])) for pid in chunk]
                # intents first: the task puts at these keys before any commit
                dests = committer.reserve_paths(chunk) if store is not None else None
                stamps = {pid: page_stamps[pid] for pid in chunk if pid in page_stamps}
                ref = task.remote(settings_ref, str(tmp_dir), items, seed, store_ref, dests, stamps)
                in_flight[asyncio.wrap_future(ref.future())] = (ref, chunk)
                visited += len(chunk)
                await collect(block=False)
        if stopping():
            report.interrupted = bool(stop)
            for ref, _ids in in_flight.values():
                ray.cancel(ref)
        while in_flight:
            await collect(block=True)
    finally:
        for fut, (ref, _ids) in list(in_flight.items()):
            ray.cancel(ref)
            fut.cancel()
        await committer.commit()
    report.visited = visited
