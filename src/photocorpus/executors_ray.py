"""The Ray side of :mod:`photocorpus.executors`: the same shard functions, run as Ray tasks or actors.

Why Ray: it gives what a cluster run needs and a process pool does not — scheduling over many nodes,
per-task CPU/GPU requests, retries of a task whose worker or node died — behind a few calls. The
driver still owns the catalog: tasks return plain values (hashes, render results, feature arrays),
and only the driver commits them, in batches. A shard whose worker dies is retried by Ray
(``max_retries``); one that still fails is left out of the results, so its photos stay pending and
the next run does them ("our" retry, on resume). Nothing committed is ever touched by a task.

Ray is an optional dependency (``pip install 'photocorpus[ray]'``): this module imports it only when a
Ray executor is actually opened.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from photocorpus.config import ExecutorSettings
from photocorpus.errors import ConfigError

_PROBE_TIMEOUT_S = 5.0

log = logging.getLogger("photocorpus.executors")

T = TypeVar("T")
R = TypeVar("R")


def import_ray() -> Any:
    """The ``ray`` module, with a message that says how to install it when it is missing."""
    # Ray phones home unless told not to; a research tool must not (and may run offline).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--executor ray needs Ray: pip install 'photocorpus[ray]' (or pip install ray)"
        ) from None
    return ray


def connect(settings: ExecutorSettings) -> Any:
    """Join (or start) the Ray cluster the settings name, once per process; return the ``ray`` module.

    ``ray_address`` "" starts a private single-machine Ray with ``num_cpus`` CPUs; "auto" joins the
    cluster this machine belongs to (``ray start``/``ray up``); ``ray://host:port`` goes through Ray
    Client. When the caller already called ``ray.init`` (a notebook, a test), that session is used.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = settings.ray_address or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address is None:
        from photocorpus.worker_counts import default_workers

        kwargs["num_cpus"] = settings.num_cpus or default_workers()
    if address is not None:
        _probe(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address or 'a new local Ray'}: {exc}. Start one with "
            "`ray start --head` (or `ray up cluster.yaml`), or pass --ray-address ray://HOST:10001."
        ) from exc
    return ray


def _probe(address: str) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) nothing listens on, in seconds: ``ray.init``
    itself waits minutes for a cluster that is not there, printing retries."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}. Start one with "
            "`ray start --head` (or `ray up cluster.yaml`), or pass --ray-address ray://HOST:10001."
        ) from None


def cluster_cpus(ray: Any) -> int:
    """CPUs the cluster offers now (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cluster_gpus(ray: Any) -> int:
    """GPUs the cluster offers now (0 on CPU-only clusters)."""
    return int(ray.cluster_resources().get("GPU", 0))


def is_system_failure(ray: Any, exc: BaseException) -> bool:
    """A worker, node or object died (retry on resume), as opposed to an error raised by our code."""
    return isinstance(exc, ray.exceptions.RayError) and not isinstance(exc, ray.exceptions.RayTaskError)


def unwrap_task_error(ray: Any, exc: BaseException) -> BaseException:
    """Our own exception inside a ``RayTaskError`` (so a StorageError stays a StorageError)."""
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        return exc.cause
    return exc


def _run_shard(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """The task body: exactly what a local pool worker runs for one shard."""
    return [fn(item) for item in items]


class RayExecutor:
    """Runs ``map_batches`` shards as Ray tasks (one CPU each), with the local executor's contract.

    Like :class:`~photocorpus.executors.LocalExecutor`, batches come back in submission order with
    one batch in flight ahead. The one difference: a shard lost to a dead worker (after Ray's own
    retries) is left out of the yielded batch and its results, and counted in ``failed_items``, so
    the caller commits the rest and a re-run picks up the missing items.
    """

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or ExecutorSettings(kind="ray")
        self.failed_items = 0
        self._ray: Any = None
        self._task: Any = None

    def __enter__(self) -> RayExecutor:
        self._ray = connect(self.settings)
        self._task = self._ray.remote(_run_shard).options(
            num_cpus=1, max_retries=self.settings.max_retries, retry_exceptions=False
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._task = None  # the cluster outlives one stage: ray.shutdown is the owner's call

    @property
    def workers(self) -> int:
        return cluster_cpus(self._ray)

    def map_batches(
        self, fn: Callable[[T], R], batches: Iterable[Sequence[T]], shard_size: int = 16
    ) -> Iterator[tuple[Sequence[T], list[R]]]:
        """Apply ``fn`` to every item on the cluster; yield ``(batch, results)`` in order (see class)."""
        if self._task is None:
            raise RuntimeError("use RayExecutor as a context manager")
        pending: deque[tuple[Sequence[T], list[tuple[Sequence[T], Any]]]] = deque()
        for batch in batches:
            shards = [batch[i : i + shard_size] for i in range(0, len(batch), shard_size)]
            pending.append((batch, [(shard, self._task.remote(fn, shard)) for shard in shards]))
            if len(pending) > 1:
                yield self._collect(pending.popleft())
        while pending:
            yield self._collect(pending.popleft())

    def _collect(
        self, entry: tuple[Sequence[T], list[tuple[Sequence[T], Any]]]
    ) -> tuple[Sequence[T], list[R]]:
        ray = self._ray
        batch, shards = entry
        kept: list[T] = []
        results: list[R] = []
        for shard, ref in shards:
            try:
                out = ray.get(ref)
            except Exception as exc:
                if not is_system_failure(ray, exc):
                    raise unwrap_task_error(ray, exc) from exc
                log.warning("a shard of %d items was lost (%s); a re-run will do it", len(shard), exc)
                self.failed_items += len(shard)
                continue
            kept.extend(shard)
            results.extend(out)
        return (batch if len(kept) == len(batch) else kept), results
