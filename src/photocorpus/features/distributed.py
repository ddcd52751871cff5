"""Featurize on a Ray cluster: a pool of actors, each loading the model once, decoding and inferring.

Why actors and not tasks: loading a CNN (and starting its onnxruntime or CUDA session) costs seconds;
a task per batch would pay it every time. Each actor holds one model for the whole run and receives
batches of (photo id, image path); it runs the very code of the local executor — the worker-side
decode (:func:`~photocorpus.features.decode.decode_shard`) and the shared inference step
(:func:`~photocorpus.features.runners.infer_batch`) — and returns the float32 outputs of the batch.
The driver makes the label rows and commits shards exactly as a local run does, so both executors
produce the same rows.

An actor asks for one GPU when the cluster has any (then the model's backend picks CUDA inside it),
otherwise for one CPU with one inference thread. A dead actor is restarted (the model reloads) and
its batch retried (``max_retries``); a batch still lost is left out, so its photos stay pending for
the next run, and is counted in ``failed_batches``. Images must be on storage every node sees: a
shared filesystem, or an object store (``[storage] images_url``), which the actors read directly.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from photocorpus.config import ExecutorSettings
from photocorpus.features.decode import DecodeTask, decode_shard
from photocorpus.features.model_registry import model_spec
from photocorpus.features.pca import Pca
from photocorpus.features.runners import Inferred, infer_batch, make_runner
from photocorpus.features.weights import onnx_path

log = logging.getLogger("photocorpus.featurize")

BATCHES_PER_ACTOR = 2  # one running, one queued: the actor never waits for the driver


class FeaturizeWorker:
    """The actor body (wrapped by ``ray.remote`` at run time, so importing this needs no Ray)."""

    def __init__(self, model: str, weights: str | None, backend: str, threads: int, pca: Pca | None) -> None:
        spec = model_spec(model)
        # the actor decodes in its own thread of control, so inference may not spin on shared cores
        self.runner = make_runner(
            spec, Path(weights) if weights else None, backend, threads, share_cores=True, pca=pca
        )

    def backend(self) -> str:
        return self.runner.backend

    def run(self, tasks: list[DecodeTask]) -> Inferred:
        return infer_batch(self.runner, decode_shard(tasks))


class ActorPool:
    """Ordered map of batches over a fixed set of featurize actors (round-robin, bounded in flight)."""

    def __init__(
        self,
        settings: ExecutorSettings,
        model: str,
        weights: Path | None,
        backend: str,
        pca: Pca | None,
    ) -> None:
        from photocorpus.executors_ray import cluster_cpus, cluster_gpus, connect

        ray = connect(settings)
        self._ray = ray
        gpus = cluster_gpus(ray)
        size = gpus if gpus else cluster_cpus(ray)
        actor_cls = ray.remote(FeaturizeWorker).options(
            num_cpus=1,
            num_gpus=1 if gpus else 0,
            max_restarts=-1,
            max_task_retries=settings.max_retries,
        )
        if model_spec(model).name != "raw-pixels" and backend in ("auto", "onnx"):
            # export the ONNX file once here, not racing in every actor (a no-op when cached)
            onnx_path(model_spec(model), weights)
        threads = 1 if not gpus else 2
        self.actors = [
            actor_cls.remote(model, str(weights) if weights else None, backend, threads, pca)
            for _ in range(size)
        ]
        self.backend = f"ray[{size} {'GPU' if gpus else 'CPU'} actors] " + ray.get(
            self.actors[0].backend.remote()
        )
        self.failed_batches = 0

    def map(self, batches: Iterable[list[DecodeTask]]) -> Iterator[Inferred]:
        """Yield each batch's :class:`Inferred`, in submission order (lost batches are left out)."""
        pending: deque[tuple[list[DecodeTask], Any]] = deque()
        depth = BATCHES_PER_ACTOR * len(self.actors)
        for i, batch in enumerate(batches):
            pending.append((batch, self.actors[i % len(self.actors)].run.remote(batch)))
            if len(pending) >= depth and (out := self._get(*pending.popleft())) is not None:
                yield out
        while pending:
            if (out := self._get(*pending.popleft())) is not None:
                yield out

    def _get(self, batch: list[DecodeTask], ref: Any) -> Inferred | None:
        from photocorpus.executors_ray import is_system_failure, unwrap_task_error

        try:
            return self._ray.get(ref)
        except Exception as exc:
            if not is_system_failure(self._ray, exc):
                raise unwrap_task_error(self._ray, exc) from exc
            log.warning("a featurize batch of %d photos was lost (%s); a re-run will do it", len(batch), exc)
            self.failed_batches += 1
            return None
