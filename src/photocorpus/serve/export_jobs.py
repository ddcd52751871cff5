"""Exports started from the app: one background thread per job, with progress the page can poll.

Why a thread and not a process: an export is mostly image I/O and encoding in libraries that release
the GIL, it needs the corpus open, and its progress must be readable by the request thread. Jobs live
in memory: a restarted server forgets them, but every export is a complete folder (or file) under
``exports/`` that the job's ``path`` names, written by :func:`photocorpus.export_photos` itself.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from photocorpus.progress import ProgressUpdate


@dataclass
class ExportJob:
    id: int
    format: str
    photos: int | None  # the selection's size, None for the whole corpus
    path: str
    state: str = "queued"  # queued, running, done, failed
    done: int = 0
    total: int | None = None
    error: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ExportJobs:
    """Starts and tracks export jobs of one corpus folder."""

    def __init__(self, corpus_root: Path) -> None:
        self.root = corpus_root
        self._jobs: dict[int, ExportJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, fmt: str, *, photo_ids: list[int] | None, splits: list[str] | None) -> ExportJob:
        """Check the request, then run the export in a thread; returns at once with the job."""
        from photocorpus.api import EXPORT_FORMATS
        from photocorpus.errors import ParameterError

        if fmt not in EXPORT_FORMATS:
            raise ParameterError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {str(fmt)[:40]!r}")
        with self._lock:
            job_id = next(self._ids)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"serve-{stamp}-{job_id}-{fmt}" + (".parquet" if fmt == "parquet" else "")
        job = ExportJob(
            job_id, fmt, None if photo_ids is None else len(photo_ids), str(self.root / "exports" / name)
        )
        with self._lock:
            self._jobs[job_id] = job
        thread = threading.Thread(
            target=self._run, args=(job, photo_ids, splits), name=f"photocorpus-export-{job_id}", daemon=True
        )
        thread.start()
        return job

    def get(self, job_id: int) -> ExportJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: ExportJob, photo_ids: list[int] | None, splits: list[str] | None) -> None:
        import photocorpus as pc

        def progress(update: ProgressUpdate) -> None:
            job.done = update.done
            job.total = update.total

        job.state = "running"
        try:
            report = pc.export_photos(
                self.root, job.format, job.path, splits=splits, photo_ids=photo_ids, progress=progress
            )
        except Exception as exc:  # the job's answer, not a crash of the server
            job.state = "failed"
            job.error = f"{type(exc).__name__}: {exc}"[:500]
            return
        job.counts = dict(report.counts)
        job.state = "done"
