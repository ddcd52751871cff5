"""Quality flags: each a stored score plus a configurable rule, so thresholds can change without decoding.

Scores (``curation.quality_scores``), measured on the image decoded to a short side of 128 pixels
(libjpeg DCT scaling where the original is larger), so they compare across resolutions:

=================  ====================================================================================
``min_side``       short side of the original, pixels                 -> ``too_small``
``aspect``         long side / short side                              -> ``extreme_aspect``
``std``            standard deviation of grey levels (0-255)           -> ``near_uniform`` (blank)
``mean``           mean grey level                                     -> ``too_dark`` / ``too_bright``
``laplacian_var``  variance of the 4-neighbour Laplacian of grey         -> ``blurry``
``chroma``         mean distance of (Cb, Cr) from neutral grey         -> ``grayscale``
``frame``          widest uniform border left, fraction of the side   -> ``frame``
=================  ====================================================================================

Which flags keep a photo out of the splits is ``drop_flags``; every flag is stored either way.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from photocorpus import reasons
from photocorpus.config import CurateSettings
from photocorpus.corpus import Corpus
from photocorpus.corpus_files import ImageLocation, open_image_bytes
from photocorpus.curate.hashing import frame_box
from photocorpus.executors import LocalExecutor
from photocorpus.interrupt import StopFlag
from photocorpus.notebook import HtmlReport
from photocorpus.progress import Advance
from photocorpus.records import utc_now

STAGE = "quality"
NORMALIZED_SIDE = 128
BATCH = 1024
FLAGS = (
    "too_small",
    "extreme_aspect",
    "near_uniform",
    "too_dark",
    "too_bright",
    "blurry",
    "grayscale",
    "frame",
)


@dataclass(slots=True)
class QualityReport(HtmlReport):
    """What one quality run did."""

    scored: int = 0
    failed: int = 0
    reflagged: int = 0
    interrupted: bool = False
    flags: dict[str, int] = field(default_factory=dict)  # flag -> photos carrying it (whole corpus)
    failures: dict[str, int] = field(default_factory=dict)


def _decode_rgb(data: bytes, side: int) -> np.ndarray:
    """Upright RGB uint8 with a short side of about ``side`` (DCT-scaled decode for large JPEGs)."""
    im = Image.open(io.BytesIO(data))
    if im.format == "JPEG":
        im.draft("RGB", (side, side))
    if "exif" in im.info:  # reading EXIF costs more than the small decode: only when there is one
        im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    im = im.convert("RGB")
    w, h = im.size
    short = min(w, h)
    if short > side:
        im = im.resize((max(1, round(w * side / short)), max(1, round(h * side / short))), Image.BOX)
    return np.asarray(im)


def measure(data: bytes, width: int, height: int) -> dict[str, float]:
    """Every quality score of one image (see the module docstring); raises for undecodable bytes."""
    rgb = _decode_rgb(data, NORMALIZED_SIDE).astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    if luma.shape[0] >= 3 and luma.shape[1] >= 3:
        lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * luma[1:-1, 1:-1]
        lap_var = float(lap.var())
    else:
        lap_var = 0.0
    top, bottom, left, right = frame_box(np.clip(luma, 0, 255).astype(np.uint8))
    hh, ww = luma.shape
    frame = max(top / hh, bottom / hh, left / ww, right / ww) if hh and ww else 0.0
    short, long = min(width, height), max(width, height)
    return {
        "min_side": float(short),
        "aspect": float(long / short) if short else float("inf"),
        "std": float(luma.std()),
        "mean": float(luma.mean()),
        "laplacian_var": lap_var,
        "chroma": float(np.sqrt(cb * cb + cr * cr).mean()),
        "frame": float(frame),
    }


def flags_for(scores: dict[str, float], s: CurateSettings) -> list[str]:
    """The quality flags that ``scores`` earn under the settings, in :data:`FLAGS` order."""
    out = []
    if scores["min_side"] < s.min_side_px:
        out.append("too_small")
    if scores["aspect"] > s.max_aspect_ratio:
        out.append("extreme_aspect")
    near_uniform = scores["std"] < s.uniform_max_std
    if near_uniform:
        out.append("near_uniform")
    if scores["mean"] < s.dark_max_mean:
        out.append("too_dark")
    if scores["mean"] > s.bright_min_mean:
        out.append("too_bright")
    if not near_uniform and scores["laplacian_var"] < s.blur_max_laplacian:
        out.append("blurry")  # a blank image has no edges to be sharp: it is near_uniform, not blurry
    if scores["chroma"] < s.grayscale_max_chroma:
        out.append("grayscale")
    if scores["frame"] >= s.frame_min_fraction and s.frame_min_fraction > 0:
        out.append("frame")
    return out


@dataclass(frozen=True, slots=True)
class _Task:
    photo_id: int
    path: ImageLocation
    sha256: str
    width: int
    height: int


def _measure_task(task: _Task) -> tuple[int, str, dict[str, float] | None, str | None, str | None]:
    try:
        data = open_image_bytes(task.path)
    except OSError as exc:
        return task.photo_id, task.sha256, None, reasons.READ_ERROR, str(exc)[:300]
    try:
        return task.photo_id, task.sha256, measure(data, task.width, task.height), None, None
    except Exception as exc:  # a decoder failure is this photo's reason, not the run's end
        return task.photo_id, task.sha256, None, reasons.CORRUPT_IMAGE, f"{type(exc).__name__}: {exc}"[:300]


def run_quality(
    corpus: Corpus,
    settings: CurateSettings | None = None,
    *,
    workers: int | None = None,
    redo: bool = False,
    stop: StopFlag | None = None,
    advance: Advance | None = None,
) -> QualityReport:
    """Score every stored image not scored yet, then (re)apply the flag rules to all stored scores."""
    settings = settings or corpus.settings.curate
    report = QualityReport()
    todo = pending_quality(corpus, redo)

    def batches() -> Iterator[list[_Task]]:
        for lo in range(0, len(todo), BATCH):
            yield todo[lo : lo + BATCH]
            if stop:
                return

    with LocalExecutor(workers or 0) as pool:
        for _tasks, results in pool.map_batches(_measure_task, batches(), shard_size=32):
            _commit_scores(corpus, results, settings, report)
            if advance:
                advance(len(results))
            if stop:
                report.interrupted = True
                break
    report.reflagged = reflag(corpus, settings)
    report.flags = flag_counts(corpus)
    return report


def pending_quality(corpus: Corpus, redo: bool = False) -> list[_Task]:
    """Stored files with no scores for their current bytes (and no failure on those bytes)."""
    where = "" if redo else "WHERE c.quality_sha256 IS NULL OR c.quality_sha256 != f.sha256"
    rows = corpus.conn.execute(
        "SELECT f.photo_id, f.path, f.sha256, COALESCE(f.original_width, f.width) AS w, "
        "COALESCE(f.original_height, f.height) AS h FROM files f "
        f"LEFT JOIN curation c ON c.photo_id = f.photo_id {where} ORDER BY f.photo_id"
    ).fetchall()
    failed = set()
    if not redo:
        failed = {
            int(r[0])
            for r in corpus.conn.execute(
                "SELECT photo_id FROM stages WHERE stage = ? AND status = 'failed'", (STAGE,)
            )
        }
    locations = corpus.image_locations([r["path"] for r in rows])
    return [
        _Task(int(r["photo_id"]), loc, r["sha256"], int(r["w"]), int(r["h"]))
        for r, loc in zip(rows, locations, strict=True)
        if int(r["photo_id"]) not in failed
    ]


def _commit_scores(
    corpus: Corpus,
    results: Sequence[tuple[int, str, dict[str, float] | None, str | None, str | None]],
    settings: CurateSettings,
    report: QualityReport,
) -> None:
    now = utc_now()
    with corpus.transaction() as conn:
        for photo_id, sha, scores, reason, detail in results:
            if scores is None:
                corpus.set_stage(photo_id, STAGE, "failed", reason, detail)
                report.failed += 1
                key = reason or "unknown"
                report.failures[key] = report.failures.get(key, 0) + 1
                continue
            conn.execute(
                """INSERT INTO curation (photo_id, quality_sha256, quality_scores, quality_flags, updated_at)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (photo_id) DO UPDATE SET quality_sha256 = excluded.quality_sha256,
                       quality_scores = excluded.quality_scores, quality_flags = excluded.quality_flags,
                       updated_at = excluded.updated_at""",
                (photo_id, sha, _dumps(scores), json.dumps(flags_for(scores, settings)), now),
            )
            corpus.set_stage(photo_id, STAGE, "done")
            report.scored += 1


def _dumps(scores: dict[str, Any]) -> str:
    return json.dumps({k: (round(v, 4) if np.isfinite(v) else None) for k, v in scores.items()})


def _loads(text: str) -> dict[str, float]:
    return {k: (float("inf") if v is None else float(v)) for k, v in json.loads(text).items()}


def reflag(corpus: Corpus, settings: CurateSettings) -> int:
    """Re-derive every photo's flags from its stored scores under ``settings``; return how many changed."""
    rows = corpus.conn.execute(
        "SELECT photo_id, quality_scores, quality_flags FROM curation WHERE quality_scores IS NOT NULL"
    ).fetchall()
    changes = []
    for r in rows:
        flags = json.dumps(flags_for(_loads(r["quality_scores"]), settings))
        if flags != r["quality_flags"]:
            changes.append((flags, int(r["photo_id"])))
    if changes:
        with corpus.transaction() as conn:
            conn.executemany("UPDATE curation SET quality_flags = ? WHERE photo_id = ?", changes)
    return len(changes)


def flag_counts(corpus: Corpus) -> dict[str, int]:
    """Photos per quality flag over the whole corpus."""
    counts: dict[str, int] = {}
    for (text,) in corpus.conn.execute("SELECT quality_flags FROM curation WHERE quality_flags IS NOT NULL"):
        for flag in json.loads(text):
            counts[flag] = counts.get(flag, 0) + 1
    return dict(sorted(counts.items()))
