"""Photos to model input, in worker processes: the decode side of featurize, shared by every executor.

A :class:`DecodeTask` (photo id, where its image is, which input the model wants) is what crosses a
process or Ray boundary; :func:`decode_shard` turns a list of them into :class:`Decoded` pixels in
whichever process runs it (a local decode worker, a local inference worker, a Ray actor). Decoding
works at reduced scale (JPEG DCT draft, crop-window-only resize; :mod:`photocorpus.image_preprocess`)
and never raises for a bad file: a photo that cannot be read becomes a :class:`Decoded` with a reason
(:mod:`photocorpus.reasons`), so one unreadable photo is recorded once and never stops a run.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from photocorpus import reasons
from photocorpus.corpus_files import ImageLocation, image_input
from photocorpus.errors import StorageError
from photocorpus.executors import spawn_pool
from photocorpus.image_preprocess import CROP_SIZE, load_rgb, raw_pixels, resize_center_crop, resize_size_for

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = [
    "PREFETCH_BATCHES",
    "DecodePool",
    "DecodeTask",
    "Decoded",
    "decode_photo",
    "decode_shard",
    "decode_tasks",
    "error_detail",
    "split_map",
]

PREFETCH_BATCHES = 3  # decoded batches kept ready ahead of inference (per worker: memory, not speed)


@dataclass(frozen=True, slots=True)
class DecodeTask:
    """One photo to decode: what a worker process or Ray actor receives."""

    photo_id: int
    path: ImageLocation  # absolute local path, or the image on the object store
    raw_side: int  # > 0: raw-pixels thumbnail of this side; 0: ImageNet crop
    crop: int = CROP_SIZE  # side of the ImageNet crop (the model's input size)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One photo's model input, or why there is none (``reason`` and ``detail`` for its stage row)."""

    photo_id: int
    pixels: np.ndarray | None  # uint8 (crop, crop, 3) crop, or float32 raw-pixels vector
    reason: str | None = None
    detail: str | None = None


def decode_photo(task: DecodeTask) -> Decoded:
    """Worker side: one photo to model input. Never raises for a bad file: returns a reason instead."""
    try:
        source = image_input(task.path)  # a local path stays a path: libjpeg reads it in draft mode
        if task.raw_side:
            pixels = raw_pixels(source, task.raw_side)
        else:
            resize = resize_size_for(task.crop)
            crop = resize_center_crop(load_rgb(source, min_side=resize), resize, task.crop)
            # uint8 crosses the process boundary (4x smaller than float32); the runner normalises.
            pixels = np.asarray(crop, dtype=np.uint8)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        return Decoded(task.photo_id, None, reasons.READ_ERROR, error_detail(exc))
    except Image.DecompressionBombError as exc:
        return Decoded(task.photo_id, None, reasons.DECOMPRESSION_BOMB, error_detail(exc))
    except UnidentifiedImageError as exc:
        return Decoded(task.photo_id, None, reasons.NOT_AN_IMAGE, error_detail(exc))
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or broken data
        return Decoded(task.photo_id, None, reasons.CORRUPT_IMAGE, error_detail(exc))
    except StorageError:  # the object store failed (not this photo): stop the run, resumably
        raise
    except Exception as exc:  # Pillow plugins raise struct.error, IndexError... on bad bytes
        return Decoded(task.photo_id, None, reasons.CORRUPT_IMAGE, error_detail(exc))
    return Decoded(task.photo_id, pixels)


def decode_tasks(corpus: Corpus, photo_ids: list[int], side: int, crop: int = CROP_SIZE) -> list[DecodeTask]:
    """Decode tasks for those of ``photo_ids`` that have a stored file, each path checked (``crop``: the
    model's input side, when ``side`` is 0)."""
    paths = corpus.file_paths(photo_ids)
    kept = [pid for pid in photo_ids if pid in paths]
    locations = corpus.image_locations([paths[pid] for pid in kept])
    return [DecodeTask(pid, location, side, crop) for pid, location in zip(kept, locations, strict=True)]


def decode_shard(tasks: Sequence[DecodeTask]) -> list[Decoded]:
    """Decode a shard of a batch, in order: the function a decode worker or a Ray actor runs."""
    return [decode_photo(t) for t in tasks]


def error_detail(exc: BaseException) -> str:
    """An exception as a stage row's detail: its type and message, cut to 300 characters."""
    return f"{type(exc).__name__}: {exc}"[:300]


class DecodePool:
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

    def __enter__(self) -> DecodePool:
        if self.workers > 0:
            self._pool = spawn_pool(self.workers)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, batches: Iterable[list[DecodeTask]]) -> Iterator[list[Decoded]]:
        if self._pool is None:
            for batch in batches:
                yield decode_shard(batch)
            return
        yield from split_map(self._pool, decode_shard, batches, self.workers, self.depth, _join_decoded)


_T = TypeVar("_T")


def split_map(
    pool: concurrent.futures.Executor,
    fn: Callable[[list[DecodeTask]], _T],
    batches: Iterable[list[DecodeTask]],
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


def _join_decoded(parts: list[list[Decoded]]) -> list[Decoded]:
    return [d for part in parts for d in part]
