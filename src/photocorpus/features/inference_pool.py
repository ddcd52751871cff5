"""Decode *and* infer in worker processes, each holding its own model: featurize's CPU path.

Why, on CPU: with the model in the driver, its inference threads and the decode processes took
turns on the same cores, and each operator of the two-threaded session waited for its slower
half. With one single-threaded model per core, each decoding its own batches, every core is
always busy with one or the other and the driver has little left to do (2 cores: the stage
went from 79 to 87-93 img/s, from 74 to 82-87 % of bare onnxruntime; docs/benchmarks.md).

A worker process loads its model once, in the pool's initializer (:func:`init_inference_worker`),
and then runs the same step as a Ray actor: :func:`~photocorpus.features.decode.decode_shard`, then
:func:`~photocorpus.features.runners.infer_batch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from photocorpus.executors import spawn_pool
from photocorpus.features.decode import DecodeTask, decode_shard, error_detail, split_map
from photocorpus.features.model_registry import FeaturizeError, model_spec
from photocorpus.features.runners import Inferred, Runner, infer_batch, join_inferred, make_runner

__all__ = ["InferencePool", "init_inference_worker"]

_WORKER_RUNNER: Runner | None = None  # the model of an inference worker process (one per process)
_WORKER_ERROR: str | None = None  # why it could not be loaded, reported by the first batch


def init_inference_worker(model: str, weights: str | None, backend: str, threads: int) -> None:
    """Process-pool initializer (after :func:`~photocorpus.executors.worker_setup`, which
    :func:`~photocorpus.executors.spawn_pool` runs first): load the model once per worker (a failure
    is reported per batch, as a :class:`FeaturizeError`, instead of a pool broken for no stated
    reason)."""
    global _WORKER_RUNNER, _WORKER_ERROR
    try:
        spec = model_spec(model)
        _WORKER_RUNNER = make_runner(
            spec, Path(weights) if weights else None, backend, threads, share_cores=True
        )
    except Exception as exc:
        _WORKER_ERROR = f"{model} could not be loaded in a featurize worker: {error_detail(exc)}"


def _worker_runner() -> Runner:
    if _WORKER_RUNNER is None:
        raise FeaturizeError(_WORKER_ERROR or "featurize worker has no model")
    return _WORKER_RUNNER


def _worker_backend() -> str:
    return _worker_runner().backend


def _infer_shard(tasks: Sequence[DecodeTask]) -> Inferred:
    """Worker side of the CPU path: decode a batch and run the model on it (the Ray actor's step)."""
    return infer_batch(_worker_runner(), decode_shard(tasks))


class InferencePool:
    """Worker processes, each decoding and inferring with its own model of ``threads`` threads.

    Each batch is split across the workers (:func:`~photocorpus.features.decode.split_map`) and comes
    back whole, in submission order, at most ``depth`` batches in flight; the driver makes the label
    rows and commits, exactly as with the other executors.
    """

    def __init__(
        self, workers: int, model: str, weights: Path | None, backend: str, threads: int, depth: int = 2
    ) -> None:
        self.workers = workers
        self.depth = max(1, depth)  # batches in flight, each split across all workers
        self._pool = spawn_pool(
            workers, init_inference_worker, (model, str(weights) if weights else None, backend, threads)
        )
        try:
            # One probe per worker: the pool spawns a process per submit while none is idle, so all
            # start (and load their model) at once; one probe started the second only when the first
            # was ready, about half a second into a 30-second run.
            probes = [self._pool.submit(_worker_backend) for _ in range(workers)]
            backends = [probe.result() for probe in probes]  # waits for all: a failed load raises here
            self.backend = backends[0]
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> InferencePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def map(self, batches: Iterable[list[DecodeTask]]) -> Iterator[Inferred]:
        yield from split_map(self._pool, _infer_shard, batches, self.workers, self.depth, join_inferred)
