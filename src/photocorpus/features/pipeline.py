"""The featurize stage for images: CNN features, ImageNet labels and raw pixels for every fetched photo.

``featurize_images(corpus, "efficientnet-lite0")`` computes, for every photo whose ``fetch`` stage is
done and that still lacks a row, one pass of the model and stores:

* the feature sets (float16 memory-mapped shards, see :mod:`photocorpus.feature_store`):

  ===================  ==============================================================
  model                feature sets (names other stages rely on)
  ===================  ==============================================================
  efficientnet-lite0   ``efficientnet-lite0`` (1280, pooled), ``efficientnet-lite0.logits`` (1000)
  efficientnet-lite1   ``efficientnet-lite1`` (1280, pooled, 240 px), ``efficientnet-lite1.logits``
  efficientnet-lite2   ``efficientnet-lite2`` (1280, pooled, 260 px), ``efficientnet-lite2.logits``
  vgg19 (--weights)    ``vgg19`` (fc1, 4096, seed 004's), ``vgg19.fc2`` (4096), ``vgg19.logits``
  resnet50 (--weights) ``resnet50`` (2048, pooled), ``resnet50.logits``
  raw-pixels           ``raw-pixels`` (150 x 150 x 3 in [0, 1]) or ``raw-pixels.pca<N>``
  ===================  ==============================================================

* for classifiers with 1000 ImageNet outputs, the top-5 classes with their softmax probabilities and
  names in the ``image_labels`` table, and in ``image_categories`` the category of the top-1 class
  (seed 004's rule) under the ``coarse`` and ``seed004`` ontologies and any user mapping, with the
  category's total probability mass (``mass``) as a confidence;
* a ``featurize:<feature set>`` stage row per photo: ``done``, or ``failed`` with a reason
  (``corrupt_image`` ...), so one unreadable photo is recorded once and never stops a run.

How it runs: the driver reads the pending photo ids (fetched, minus those already in *every* output
set, minus permanent failures) and sends batches of them, in order, to worker processes that decode
and preprocess at reduced scale (JPEG DCT draft, crop-window-only resize;
:mod:`photocorpus.image_preprocess`). With onnxruntime on the CPU each worker also runs its own
single-threaded model and returns the outputs (:class:`~photocorpus.features.inference_pool.InferencePool`);
on a GPU, with torch, or with one worker, the workers only decode a few batches ahead while the
driver runs batched inference; on Ray, actors decode and infer (:mod:`photocorpus.features.distributed`).
Rows are buffered up to ``shard_rows`` (at most ~256 MB) and committed as one transaction: a new shard
per feature set, the labels, the categories and the stage rows. So a kill -9 loses at most one
uncommitted shard, a re-run does exactly what is left, and memory stays bounded by the shard buffer
plus the batches in flight. After a complete run each set is compacted into a single shard so that
loading it is one mmap.

This module is only the driver; each piece it strings together has its own module in this package:

======================  ========================================================================
``model_registry``      the models, the feature sets each writes, stage names, ``FeaturizeError``
``weights``             the user's weights file, the torch network, the ONNX export, the model id
``backends``            onnxruntime or torch, GPU or CPU
``pending``             which photos are still to do
``decode``              photo to model input in worker processes; the ordered decode-ahead pool
``runners``             the loaded model and the inference step every executor shares
``inference_pool``      decode and infer in local worker processes (the CPU path)
``distributed``         the same on a pool of Ray actors
``pca``                 the raw-pixels PCA basis
``label_rows``          ImageNet top-5 and ontology categories as catalog rows
``shard_writer``        the buffered, one-transaction commits
``set_maintenance``     compaction and orphan sweeping after a run; ``features list`` and ``remove``
``run_report``          :class:`FeaturizeReport`
======================  ========================================================================
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import feature_store
from photocorpus.features.backends import onnx_on_cpu
from photocorpus.features.decode import Decoded, DecodePool, DecodeTask, decode_tasks
from photocorpus.features.inference_pool import InferencePool
from photocorpus.features.label_rows import label_rows, load_ontologies
from photocorpus.features.model_registry import (
    DEFAULT_MODEL,
    FeaturizeError,
    ImageModelSpec,
    feature_set_names,
    model_spec,
    stage_name,
)
from photocorpus.features.pca import load_or_fit_pca
from photocorpus.features.pending import pending_photo_ids
from photocorpus.features.run_report import FeaturizeReport, peak_rss_mb
from photocorpus.features.runners import Inferred, Runner, infer_batch, make_runner
from photocorpus.features.set_maintenance import finish_sets
from photocorpus.features.shard_writer import ShardWriter, check_compatible
from photocorpus.features.weights import model_id as weights_model_id
from photocorpus.features.weights import onnx_path, weights_file
from photocorpus.image_preprocess import resize_size_for
from photocorpus.imagenet_labels import imagenet_class_table
from photocorpus.worker_counts import capped_workers, default_workers

if TYPE_CHECKING:
    from photocorpus.config import ExecutorSettings
    from photocorpus.corpus import Corpus
    from photocorpus.interrupt import StopFlag
    from photocorpus.progress import ProgressHandle

__all__ = ["featurize_images"]

MAX_SHARD_BYTES = 256 * 2**20  # bound on the driver's row buffer, whatever the feature width


def featurize_images(
    corpus: Corpus,
    model: str = DEFAULT_MODEL,
    *,
    weights: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    shard_rows: int | None = None,
    dtype: str | None = None,
    backend: str | None = None,
    pca_dims: int | None = None,
    ontologies: Sequence[str | os.PathLike[str]] | None = None,
    compact: bool | None = None,
    limit: int | None = None,
    stop: StopFlag | None = None,
    progress: ProgressHandle | None = None,
    executor: ExecutorSettings | None = None,
) -> FeaturizeReport:
    """Featurize every fetched photo that lacks ``model``'s features; see the module docstring.

    Options left as ``None`` come from the corpus's ``[featurize]`` settings (where ``workers = 0``
    means one decode process per core); ``workers=0`` passed here decodes in this process. ``limit``
    caps the photos done in this run (the rest stay pending). ``stop`` is polled between batches.
    ``executor`` (default: the corpus's ``[executor]``) may run decode and inference in a pool of Ray
    actors, each loading the model once (:mod:`photocorpus.features.distributed`); the driver commits.
    """
    started = time.perf_counter()
    run_wall_start = time.time()
    cfg = corpus.settings.featurize
    spec = model_spec(model)
    batch_size = batch_size or cfg.batch_size
    if workers is None:
        workers = cfg.workers or default_workers()
    workers = capped_workers(workers, "--workers")  # [featurize] workers is capped when it is loaded
    threads = threads or cfg.threads or default_workers()
    dtype = dtype or cfg.dtype
    if dtype not in feature_store.DTYPES:
        raise FeaturizeError(
            f"dtype (--dtype) must be one of {', '.join(feature_store.DTYPES)}, not {dtype!r}"
        )
    compact = cfg.compact if compact is None else compact
    pca_dims = cfg.raw_pixels_pca if pca_dims is None else pca_dims
    if spec.name != "raw-pixels" and pca_dims and pca_dims != cfg.raw_pixels_pca:
        raise FeaturizeError("raw_pixels_pca (--pca) only applies to model='raw-pixels' (--model raw-pixels)")
    names = feature_set_names(spec.name, pca_dims=pca_dims if spec.name == "raw-pixels" else 0)
    outputs = dict(zip([out for out, _ in spec.outputs], names, strict=True))
    stage = stage_name(names[0])
    report = FeaturizeReport(model=spec.name, feature_sets=names)
    executor = executor or corpus.settings.executor
    report.executor = executor.kind
    on_ray = executor.kind == "ray"

    # What computes the rows, checked against the sets already stored before any photo is touched.
    weights_path = weights_file(spec, weights)
    side = cfg.raw_pixels_size if spec.name == "raw-pixels" else 0
    model_id, params = _model_identity(spec, weights_path, side, pca_dims)
    check_compatible(corpus, names, model_id, dtype)
    # mapping files named in corpus.toml are relative to the corpus; on the command line, to the cwd
    from_settings = [p if Path(p).is_absolute() else str(corpus.root / p) for p in cfg.ontologies]
    ontos = load_ontologies([*from_settings, *(ontologies or [])]) if spec.label_output else []

    todo = pending_photo_ids(corpus, names, stage)
    if limit is not None:
        todo = todo[: max(0, limit)]
    report.pending = len(todo)
    if progress is not None:
        progress.set_total(len(todo))
    if len(todo) == 0:
        report.backend = "none (nothing to do)"
        # still finish what a kill may have cut short: the compaction, and the files it left
        report.compacted = finish_sets(corpus, names, compact=compact, older_than=run_wall_start)
        report.seconds = time.perf_counter() - started
        report.peak_rss_mb = peak_rss_mb()
        return report

    backend = backend or cfg.backend
    # On CPU with onnxruntime, each worker decodes and infers with its own single-threaded model
    # (see InferencePool); on a GPU, or with torch on the CPU, workers decode and the driver infers.
    workers_infer = not on_ray and spec.name != "raw-pixels" and workers > 1 and onnx_on_cpu(backend)
    with contextlib.ExitStack() as stack:
        # On Ray the decode workers are the actors themselves; the local pool only fits a PCA basis.
        pool = stack.enter_context(DecodePool(0 if on_ray or workers_infer else workers))
        pca = None
        if spec.name == "raw-pixels" and pca_dims:
            pca, params["pca"] = load_or_fit_pca(corpus, names[0], pca_dims, side, todo, pool, cfg.text_seed)
        batches = _decode_batches(corpus, todo, batch_size, side, spec.crop_size, stop)
        ray_pool = None
        inferred: Iterator[Inferred]
        if on_ray:
            from photocorpus.features.distributed import ActorPool

            ray_pool = ActorPool(executor, spec.name, weights_path, backend, pca)
            report.backend = ray_pool.backend
            inferred = ray_pool.map(batches)
        elif workers_infer:
            onnx_path(spec, weights_path)  # export once here, not racing in every worker
            per_worker = max(1, threads // workers)
            # two shards per worker in flight, also when there are more workers than photos in a batch
            depth = max(2, math.ceil(2 * workers / min(workers, batch_size)))
            infer_pool = stack.enter_context(
                InferencePool(workers, spec.name, weights_path, backend, per_worker, depth)
            )
            report.backend = f"{infer_pool.backend} [{workers} workers x {per_worker} thread(s)]"
            inferred = infer_pool.map(batches)
        else:
            runner = make_runner(spec, weights_path, backend, threads, share_cores=workers > 0, pca=pca)
            report.backend = runner.backend
            inferred = _infer_in_driver(runner, pool.map(batches))
        params["backend"] = report.backend
        width = sum(_output_width(spec, outputs, pca_dims, side))
        itemsize = np.dtype(feature_store.DTYPES[dtype]).itemsize
        rows_per_shard = max(
            batch_size, min(shard_rows or cfg.shard_rows, MAX_SHARD_BYTES // (width * itemsize))
        )
        writer = ShardWriter(
            corpus, outputs, model_id=model_id, dtype=dtype, params=params, stage=stage, report=report
        )
        for batch in inferred:
            result, ids = batch.outputs, batch.ids
            if result is not None:
                labels = None
                if spec.label_output and result[spec.label_output].shape[1] == len(imagenet_class_table()):
                    labels = label_rows(names[0], ids, result[spec.label_output], ontos)
                writer.add(ids, result, labels)
            writer.fail(batch.failures)
            if writer.buffer.count >= rows_per_shard:
                writer.commit()
            if progress is not None:
                progress(batch.size)
            if stop:
                report.interrupted = True
                break
        writer.commit()
        if ray_pool is not None:
            report.shards_failed = ray_pool.failed_batches
    if not report.interrupted:
        report.compacted = finish_sets(corpus, names, compact=compact, older_than=run_wall_start)
    report.seconds = time.perf_counter() - started
    report.peak_rss_mb = peak_rss_mb()
    report.workers_peak_rss_mb = peak_rss_mb(children=True)
    return report


def _model_identity(
    spec: ImageModelSpec, weights_path: Path | None, side: int, pca_dims: int
) -> tuple[str, dict[str, Any]]:
    """``(model id, params)`` registered with every set of the run: the id changes with the weights (or
    the raw-pixels size and PCA), so rows of other weights are never mixed into a set."""
    params: dict[str, Any] = {"model": spec.name, "description": spec.description}
    if spec.name == "raw-pixels":
        params["preprocess"] = f"whole image resized to {side}x{side} (bicubic, aspect not kept), RGB / 255"
        return f"raw-pixels-{side}" + (f"+pca{pca_dims}" if pca_dims else ""), params
    model_id, digest = weights_model_id(spec, weights_path)
    params.update(
        weights_sha256=digest,
        weights_file=str(weights_path) if weights_path else "packaged",
        preprocess=f"RGB, short side {resize_size_for(spec.crop_size)} bicubic, centre crop {spec.crop_size}",
    )
    return model_id, params


def _decode_batches(
    corpus: Corpus, todo: np.ndarray, batch_size: int, side: int, crop: int, stop: StopFlag | None
) -> Iterator[list[DecodeTask]]:
    """The pending photos as batches of decode tasks, made lazily as the executor asks for them (so a
    stop request ends the stream after the batch in hand)."""
    for start in range(0, len(todo), batch_size):
        yield decode_tasks(corpus, todo[start : start + batch_size].tolist(), side, crop)
        if stop:
            return


def _infer_in_driver(runner: Runner, decoded: Iterable[list[Decoded]]) -> Iterator[Inferred]:
    """The driver runs the model on each batch the decode pool hands back (GPU, torch, one worker)."""
    for batch in decoded:
        yield infer_batch(runner, batch)


def _output_width(spec: ImageModelSpec, outputs: dict[str, str], pca_dims: int, side: int) -> list[int]:
    """Approximate row widths, for sizing shards before the first batch tells the real ones."""
    if spec.name == "raw-pixels":
        return [pca_dims or side * side * 3]
    widths = {"features": 2048, "fc1": 4096, "fc2": 4096, "logits": 1000}
    return [widths.get(out, 4096) for out in outputs]
