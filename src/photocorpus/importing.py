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

Symlinks: the folder may come from someone else, and a symlink in it can point anywhere (an image
elsewhere on the disk, ``~/.ssh/id_rsa`` named ``a.jpg``). A file whose real path leaves the imported
folder is not read unless ``follow_symlinks`` is set (``--follow-symlinks``); it fails with
``symlink_outside_source``, and such a sidecar (caption, JSON) is skipped with a warning. A file that
is followed is stored as a copy, or with ``--link`` as a hard link to the real file (a copy across
devices): never as a symlink, which every later stage would refuse as leaving the corpus. A FIFO or
device under an image's name fails with ``not_a_regular_file`` instead of hanging the worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photocorpus import corpus_files, reasons
from photocorpus.corpus import Corpus, StoredFile
from photocorpus.errors import ConfigError
from photocorpus.executors import LocalExecutor
from photocorpus.exif import fields_from_bytes, store_exif
from photocorpus.fetch.imaging import ImageProbe, probe_image
from photocorpus.interrupt import StopFlag
from photocorpus.notebook import HtmlReport
from photocorpus.progress import Advance
from photocorpus.records import PhotoRecord
from photocorpus.s16a import S16aExtras, store_s16a
from photocorpus.sources.folder import detect_layout, iter_candidates, read_candidate
from photocorpus.sources.local_candidates import LocalCandidate, real_path_inside

STAGE = "fetch"  # an imported photo has its image, exactly like a fetched one
STAGE_COUNTERS = "import"  # counters of the import itself (e.g. skipped_videos)


@dataclass(frozen=True, slots=True)
class _ImportTask:
    candidate: LocalCandidate
    tmp_dir: str
    link: bool
    max_pixels: int
    source_root: str  # the imported folder's real path: what "inside" means for symlinks
    follow_symlinks: bool


@dataclass(frozen=True, slots=True)
class _Prepared:
    candidate: LocalCandidate
    record: PhotoRecord
    probe: ImageProbe
    tmp_file: str | None  # validated copy waiting in the scratch folder (copy mode, or across devices)
    exif: dict[str, Any] = field(default_factory=dict)  # structured EXIF read from the file itself
    real_path: str | None = None  # the file read, symlinks resolved: what --link hard-links
    dataset_exif: dict[str, Any] = field(default_factory=dict)  # from the dataset's EXIF file (MIRFLICKR)
    s16a: S16aExtras | None = None  # comments, albums, groups... of an s16a JSON file


@dataclass(slots=True)
class ImportReport(HtmlReport):
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
    cand, skipped_sidecars = _without_outside_sidecars(task)
    read = read_candidate(cand)
    record = read.record
    if skipped_sidecars:
        record.extra.setdefault("sidecar_warnings", []).extend(skipped_sidecars)
    real = os.path.realpath(cand.path)
    if not task.follow_symlinks and not real_path_inside(real, task.source_root):
        detail = "a symlink to a file outside the imported folder; import --follow-symlinks to take it"
        probe = ImageProbe(False, "", 0, reason=reasons.SYMLINK_OUTSIDE_SOURCE, detail=detail)
        return _Prepared(cand, record, probe, None)
    try:
        data = _read_regular_file(real)
    except _NotRegularFileError as exc:
        probe = ImageProbe(False, "", 0, reason=reasons.NOT_A_REGULAR_FILE, detail=str(exc))
        return _Prepared(cand, record, probe, None, dataset_exif=read.dataset_exif, s16a=read.s16a)
    except OSError as exc:
        probe = ImageProbe(False, "", 0, reason=reasons.READ_ERROR, detail=f"{exc.strerror or exc}"[:300])
        return _Prepared(cand, record, probe, None, dataset_exif=read.dataset_exif, s16a=read.s16a)
    probe = probe_image(data, task.max_pixels)
    tmp_file = None
    if probe.ok and (not task.link or not _same_device(real, task.tmp_dir)):
        # --link across devices stores a copy of the bytes just validated, never a symlink
        tmp_file = str(corpus_files.write_tmp(Path(task.tmp_dir), data))
    exif = fields_from_bytes(data) if probe.ok and probe.format in ("JPEG", "TIFF", "WEBP") else {}
    return _Prepared(cand, record, probe, tmp_file, exif, real, read.dataset_exif, read.s16a)


class _NotRegularFileError(Exception):
    """The path names a FIFO, a device or a folder, not a file whose bytes could be an image."""


def _read_regular_file(path: str) -> bytes:
    """The bytes of the regular file at ``path``. Opened non-blocking, so a FIFO named ``x.jpg`` is
    refused at once instead of blocking the worker forever (and ``/dev/zero`` is never read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "folder" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "device or socket"
            raise _NotRegularFileError(f"a {kind}, not a regular file")
        return fh.read()


def _same_device(path: str, folder: str) -> bool:
    try:
        return os.stat(path).st_dev == os.stat(folder).st_dev
    except OSError:
        return False


def _without_outside_sidecars(task: _ImportTask) -> tuple[LocalCandidate, list[str]]:
    """The candidate without the sidecars (caption, JSON, tags) whose real path leaves the imported
    folder, unless symlinks are followed; and one warning per sidecar dropped. A caption file linked
    to a private file would otherwise be stored, whole, as the photo's caption."""
    cand = task.candidate
    if task.follow_symlinks:
        return cand, []
    dropped: dict[str, None] = {}
    warnings: list[str] = []
    for name in ("caption_path", "json_path", "tags_path", "exif_path", "license_path"):
        path = getattr(cand, name)
        if path is not None and not real_path_inside(os.path.realpath(path), task.source_root):
            dropped[name] = None
            warnings.append(f"{name.removesuffix('_path')}: a symlink outside the imported folder, not read")
    return (dataclasses.replace(cand, **dropped) if dropped else cand), warnings


def _batched(items: Iterator[LocalCandidate], size: int) -> Iterator[list[LocalCandidate]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


def import_folder(
    corpus: Corpus,
    src: str | os.PathLike[str],
    *,
    label: str | None = None,
    link: bool | None = None,
    follow_symlinks: bool | None = None,
    workers: int | None = None,
    stop: StopFlag | None = None,
    advance: Advance | None = None,
) -> ImportReport:
    """Import every image under ``src``; see the module docstring for the guarantees."""
    root = Path(src).expanduser().absolute()
    layout = detect_layout(root)
    settings = corpus.settings.import_
    link = settings.link if link is None else link
    follow_symlinks = settings.follow_symlinks if follow_symlinks is None else follow_symlinks
    source_root = os.path.realpath(root)
    report = ImportReport(layout=layout)
    if link and corpus.image_store is not None:
        raise ConfigError(
            f"link=True cannot link into an object store ({corpus.image_store.url}); "
            "import with link=False (--copy: the files are copied), or set [import] link = false"
        )
    corpus.resolve_dangling_intents()
    tmp_dir = corpus.tmp_dir()

    def pending_batches() -> Iterator[list[_ImportTask]]:
        listing = iter_candidates(root, layout, label, follow_symlinks=follow_symlinks)
        for batch in _batched(listing, settings.batch_size):
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
                yield [
                    _ImportTask(
                        c, str(tmp_dir), link, settings.max_image_pixels, source_root, follow_symlinks
                    )
                    for c in todo
                ]
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
        elif prep.tmp_file is None:  # --link on the same device: a hard link to the real file
            corpus_files.link_into(
                Path(prep.real_path or prep.candidate.path), corpus.abs_path(paths[pid]), tmp_dir
            )
        else:
            corpus_files.place(Path(prep.tmp_file), corpus.abs_path(paths[pid]))
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
