"""Thumbnails for reports: one small JPEG per photo, made once, cached in the corpus, linked into reports.

Why files and not base64 in the page: a 100k-photo report would carry hundreds of megabytes of image
text that the browser must parse before anything shows. As files, the page loads only what is hovered
or opened. Why one file per photo rather than sprite sheets: a hover then fetches 5 KB instead of a
whole sheet, nothing is ever re-encoded when photos are added, and a report of a sample links just
the files it needs.

Cache: ``reports/.thumbs/<px>/<photo id // 1000:05d>/<photo id>-<sha256[:12] of the image>.jpg``. The
content hash in the name means a replaced image gets a new thumbnail and a stale one is never shown.
A report links them (hard links, so they cost no space; copies where the file system refuses) as
``thumbs/<photo id // 1000:05d>/<photo id>.jpg``, a path the page derives from the photo id alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from photocorpus import corpus_paths
from photocorpus.corpus_files import ImageLocation, atomic_path, image_file

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

__all__ = [
    "THUMB_PX",
    "ThumbReport",
    "cache_dir",
    "cached_thumbnail",
    "ensure_thumbnails",
    "link_thumbnails",
    "report_relpath",
]

THUMB_PX = 160
JPEG_QUALITY = 82
PER_DIR = 1000
BATCH = 256


@dataclass
class ThumbReport:
    made: int = 0
    cached: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # photo id -> why
    paths: dict[int, Path] = field(default_factory=dict)  # photo id -> cached thumbnail


def cache_dir(corpus: Corpus, px: int = THUMB_PX) -> Path:
    return corpus.root / corpus_paths.REPORTS_DIR / ".thumbs" / str(px)


def report_relpath(photo_id: int) -> str:
    """Where a report keeps a photo's thumbnail, relative to its index.html (report.js derives the same)."""
    return f"thumbs/{photo_id // PER_DIR:05d}/{photo_id}.jpg"


def cached_thumbnail(corpus: Corpus, photo_id: int, sha256: str, px: int = THUMB_PX) -> Path:
    """Where the cached thumbnail of this photo's current image is (or will be): the report and
    ``photocorpus serve`` share the cache, so a thumbnail made by one is reused by the other."""
    return cache_dir(corpus, px) / f"{photo_id // PER_DIR:05d}/{photo_id}-{sha256[:12]}.jpg"


def make_thumbnail(task: tuple[ImageLocation, str, int]) -> str | None:
    """Worker: write a ``px``-bounded JPEG of ``src`` to ``dest`` atomically; return an error or None.

    ``src`` may be on an object store; the thumbnail is always written locally, next to the reports.
    """
    from PIL import Image, ImageOps

    src, dest, px = task
    try:
        with Image.open(image_file(src)) as im:
            im.draft("RGB", (px, px))  # JPEG: decode at 1/2..1/8 scale straight from the DCT
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            im.thumbnail((px, px), Image.Resampling.LANCZOS)
            # a cache: a thumbnail lost in a crash is made again, so no fsync (thousands per report)
            with atomic_path(dest, fsync=False) as tmp:
                im.save(tmp, "JPEG", quality=JPEG_QUALITY, optimize=True)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def ensure_thumbnails(
    corpus: Corpus,
    photo_ids: Sequence[int] | np.ndarray,
    *,
    px: int = THUMB_PX,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> ThumbReport:
    """Make the missing thumbnails of these photos (those with a stored file); cached ones are kept.

    A photo whose image cannot be decoded is reported in ``failed`` and gets no thumbnail; the report
    shows its point without a picture. ``stop()`` is polled between batches.
    """
    from photocorpus.executors import LocalExecutor

    report = ThumbReport()
    ids = [int(i) for i in photo_ids]
    files: dict[int, tuple[str, str]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in corpus.conn.execute(
            f"SELECT photo_id, path, sha256 FROM files WHERE photo_id IN ({marks})", chunk
        ):
            files[int(row[0])] = (row[1], row[2])
    todo: list[tuple[int, tuple[ImageLocation, str, int]]] = []
    for pid in ids:
        if pid not in files:
            report.failed[pid] = "no stored image"
            continue
        rel, sha = files[pid]
        dest = cached_thumbnail(corpus, pid, sha, px)
        report.paths[pid] = dest
        if dest.is_file():
            report.cached += 1
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            todo.append((pid, (corpus.image_location(rel), str(dest), px)))
    if progress is not None:
        progress(report.cached + len(report.failed))
    if not todo:
        return report
    batches = [todo[i : i + BATCH] for i in range(0, len(todo), BATCH)]
    with LocalExecutor(workers if len(todo) > BATCH else 1) as pool:
        results = pool.map_batches(make_thumbnail, ([t for _, t in b] for b in batches))
        for number, (batch, errors) in enumerate(results):
            for (pid, _task), error in zip(batches[number], errors, strict=True):
                if error is None:
                    report.made += 1
                else:
                    report.failed[pid] = error
                    report.paths.pop(pid, None)
            if progress is not None:
                progress(len(batch))
            if stop is not None and stop():
                from photocorpus.explore.errors import ExploreInterrupted

                raise ExploreInterrupted("interrupted while making thumbnails; the ones made are cached")
    return report


def link_thumbnails(paths: dict[int, Path], report_dir: Path) -> int:
    """Hard-link (else copy) cached thumbnails into ``report_dir/thumbs``; returns how many."""
    for pid, src in paths.items():
        dest = report_dir / report_relpath(pid)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except FileExistsError:
            continue
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(src, dest)
    return len(paths)
