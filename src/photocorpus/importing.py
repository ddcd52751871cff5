"""``photocorpus import DIR``: bring local folders and dataset exports into a corpus.

Idempotent and resumable: a photo whose ``fetch`` stage is already done (or failed with a recorded
reason) is skipped before any file is read, so re-importing adds nothing and changes nothing, and an
import killed at any point simply continues on the next run.

Each batch is two transactions around the file moves (see :mod:`photocorpus.corpus`):
1. insert the photo rows and reserve each file's path with an intent;
2. rename the validated files into place;
3. record the files and stage statuses and drop the intents.

With images on an object store (``[storage] images_url``), step 2 puts each validated copy at its
final key instead of renaming it (put-then-commit); ``--link`` needs images on the local disk.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photocorpus import reasons, storage
from photocorpus.corpus import Corpus, StoredFile
from photocorpus.enrich.exif import fields_from_bytes, store_exif
from photocorpus.enrich.s16a import S16aExtras, store_s16a
from photocorpus.errors import ConfigError
from photocorpus.executors import LocalExecutor
from photocorpus.fetch.imaging import ImageProbe, probe_image
from photocorpus.interrupt import StopFlag
from photocorpus.progress import Advance
from photocorpus.records import PhotoRecord
from photocorpus.sources.folder import LocalCandidate, detect_layout, iter_candidates, read_candidate

STAGE = "fetch"  # an imported photo has its image, exactly like a fetched one
STAGE_COUNTERS = "import"  # counters of the import itself (e.g. skipped_videos)


@dataclass(frozen=True, slots=True)
class _ImportTask:
    candidate: LocalCandidate
    tmp_dir: str
    link: bool
    max_pixels: int


@dataclass(frozen=True, slots=True)
class _Prepared:
    candidate: LocalCandidate
    record: PhotoRecord
    probe: ImageProbe
    tmp_file: str | None  # validated copy waiting in the scratch folder (copy mode)
    exif: dict[str, Any] = field(default_factory=dict)  # structured EXIF read from the file itself
    dataset_exif: dict[str, Any] = field(default_factory=dict)  # from the dataset's EXIF file (MIRFLICKR)
    s16a: S16aExtras | None = None  # comments, albums, groups... of an s16a JSON file


@dataclass(slots=True)
class ImportReport:
    """What one import run did."""

    layout: str
    seen: int = 0
    imported: int = 0
    failed: int = 0
    skipped_existing: int = 0
    interrupted: bool = False
    failures: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # media a layout lists but never imports, by reason


def _prepare(task: _ImportTask) -> _Prepared:
    """Worker side: read sidecars and bytes, validate, and stage a copy. Never raises for bad input."""
    cand = task.candidate
    read = read_candidate(cand)
    record = read.record
    try:
        with open(cand.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        probe = ImageProbe(False, "", 0, reason=reasons.READ_ERROR, detail=f"{exc.strerror or exc}"[:300])
        return _Prepared(cand, record, probe, None, dataset_exif=read.dataset_exif, s16a=read.s16a)
    probe = probe_image(data, task.max_pixels)
    tmp_file = None
    if probe.ok and not task.link:
        tmp_file = str(storage.write_tmp(Path(task.tmp_dir), data))
    exif = fields_from_bytes(data) if probe.ok and probe.format in ("JPEG", "TIFF", "WEBP") else {}
    return _Prepared(cand, record, probe, tmp_file, exif, read.dataset_exif, read.s16a)


def _batched(items: Iterator[LocalCandidate], size: int) -> Iterator[list[LocalCandidate]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


def import_folder(
    corpus: Corpus,
    src: str | os.PathLike[str],
    *,
    label: str | None = None,
    link: bool | None = None,
    workers: int | None = None,
    stop: StopFlag | None = None,
    advance: Advance | None = None,
) -> ImportReport:
    """Import every image under ``src``; see the module docstring for the guarantees."""
    root = Path(src).expanduser().absolute()
    layout = detect_layout(root)
    settings = corpus.settings.import_
    link = settings.link if link is None else link
    report = ImportReport(layout=layout)
    if link and corpus.image_store is not None:
        raise ConfigError(
            f"import --link cannot link into an object store ({corpus.image_store.url}); "
            "import without --link (the files are copied), or set [import] link = false"
        )
    corpus.resolve_dangling_intents()
    tmp_dir = corpus.tmp_dir()

    def pending_batches() -> Iterator[list[_ImportTask]]:
        for batch in _batched(iter_candidates(root, layout, label), settings.batch_size):
            skipped = [c for c in batch if c.skip_reason]
            if skipped:
                batch = [c for c in batch if not c.skip_reason]
                _record_skipped(corpus, skipped, report)
                if advance:
                    advance(len(skipped))
            report.seen += len(batch)
            todo = _not_yet_done(corpus, batch)
            report.skipped_existing += len(batch) - len(todo)
            if advance and len(batch) != len(todo):
                advance(len(batch) - len(todo))
            if todo:
                yield [_ImportTask(c, str(tmp_dir), link, settings.max_image_pixels) for c in todo]
            if stop:
                return

    try:
        with LocalExecutor(settings.workers if workers is None else workers) as pool:
            for _tasks, prepared in pool.map_batches(_prepare, pending_batches()):
                _commit_batch(corpus, prepared, link, tmp_dir, report)
                if advance:
                    advance(len(prepared))
                if stop:
                    report.interrupted = True
                    break
    finally:  # also on a disk-full stop: staged copies of uncommitted photos are dropped
        _cleanup_tmp(tmp_dir)
    return report


def _record_skipped(corpus: Corpus, skipped: list[LocalCandidate], report: ImportReport) -> None:
    """Count media a layout skips on purpose (videos); the catalog remembers each once, so the
    ``import`` counters stay exact across re-imports and resumes."""
    by_reason: dict[str, list[tuple[str, str]]] = {}
    for cand in skipped:
        by_reason.setdefault(cand.skip_reason or "unknown", []).append((cand.source, cand.source_id))
    with corpus.transaction():
        for reason, keys in by_reason.items():
            corpus.record_skipped_media(STAGE_COUNTERS, reason, keys)
            report.skipped[reason] = report.skipped.get(reason, 0) + len(keys)


def _not_yet_done(corpus: Corpus, batch: list[LocalCandidate]) -> list[LocalCandidate]:
    by_source: dict[str, list[LocalCandidate]] = {}
    for cand in batch:
        by_source.setdefault(cand.source, []).append(cand)
    todo: list[LocalCandidate] = []
    done_keys: set[tuple[str, str]] = set()
    for source, cands in by_source.items():
        ids = corpus.photo_ids(source, [c.source_id for c in cands])
        statuses = corpus.stage_status(list(ids.values()), STAGE)
        for sid, pid in ids.items():
            if statuses.get(pid) in ("done", "failed"):
                done_keys.add((source, sid))
    seen: set[tuple[str, str]] = set()
    for cand in batch:
        key = (cand.source, cand.source_id)
        if key in done_keys or key in seen:
            continue
        seen.add(key)
        todo.append(cand)
    return todo


def _commit_batch(
    corpus: Corpus, prepared: list[_Prepared], link: bool, tmp_dir: Path, report: ImportReport
) -> None:
    # 1. rows and path reservations
    with corpus.transaction():
        photo_ids = corpus.add_photos([p.record for p in prepared])
        paths = {
            pid: corpus.plan_image_path(pid, p.probe.format)
            for pid, p in zip(photo_ids, prepared, strict=True)
            if p.probe.ok and p.probe.format
        }
    # 2. files into place (atomic renames / links; object puts at the final keys)
    store = corpus.image_store
    if store is not None:
        store.put_files(
            [
                (paths[pid], prep.tmp_file)
                for pid, prep in zip(photo_ids, prepared, strict=True)
                if pid in paths and prep.tmp_file is not None
            ]
        )
    stored: list[tuple[int, StoredFile]] = []
    for pid, prep in zip(photo_ids, prepared, strict=True):
        if pid not in paths:
            continue
        if store is not None:
            Path(prep.tmp_file).unlink(missing_ok=True)  # type: ignore[arg-type]
        elif link:
            storage.link_into(Path(prep.candidate.path), corpus.abs_path(paths[pid]), tmp_dir)
        else:
            storage.place(Path(prep.tmp_file), corpus.abs_path(paths[pid]))  # type: ignore[arg-type]
        probe = prep.probe
        stored.append(
            (
                pid,
                StoredFile(
                    path=paths[pid],
                    sha256=probe.sha256,
                    width=probe.width or 0,
                    height=probe.height or 0,
                    bytes=probe.bytes,
                    format=probe.format or "",
                    original_width=probe.width,
                    original_height=probe.height,
                    original_bytes=probe.bytes,
                    origin=prep.candidate.path,
                ),
            )
        )
    # 3. files, statuses, intents dropped: one transaction
    by_photo = dict(zip(photo_ids, prepared, strict=True))
    with corpus.transaction():
        for pid, sf in stored:
            corpus.commit_file(pid, sf, stage=STAGE)
            prep = by_photo[pid]
            # The dataset's metadata first, so that its values are the ones kept where the file's own
            # EXIF disagrees: MIRFLICKR's images are re-encoded copies, its metadata describes the originals.
            if prep.s16a is not None:
                store_s16a(corpus, pid, prep.s16a)
            if prep.dataset_exif:
                store_exif(corpus, pid, prep.dataset_exif, "dataset")
            if prep.exif:
                store_exif(corpus, pid, prep.exif, "file")
        for pid, prep in zip(photo_ids, prepared, strict=True):
            if pid in paths:
                continue
            reason = prep.probe.reason or "unknown"
            corpus.set_stage(pid, STAGE, "failed", reason, prep.probe.detail)
            report.failures[reason] = report.failures.get(reason, 0) + 1
    report.imported += len(stored)
    report.failed += len(prepared) - len(stored)


def _cleanup_tmp(tmp_dir: Path) -> None:
    for leftover in tmp_dir.glob("*"):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        tmp_dir.rmdir()
