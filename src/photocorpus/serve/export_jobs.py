"""Exports started from the app: one background thread per job, with progress the page can poll.

Why a thread and not a process: an export is mostly image I/O and encoding in libraries that release
the GIL, it needs the corpus open, and its progress must be readable by the request thread.

Why each job's state is also a small JSON file (``exports/.serve-jobs/<server id>/<job id>.json``):
``photocorpus serve --workers N`` runs N processes behind one port, and the page polling a job may
reach any of them; the worker running the export rewrites the file (atomically, at most twice a
second), the others read it. Job ids are claimed by creating the file exclusively, so two workers
never hand out the same id. The server id is new at every start: a restarted server forgets the
jobs, but every export is a complete folder (or file) under ``exports/`` that the job's ``path``
names, written by :func:`photocorpus.export_photos` itself.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from photocorpus.corpus_files import write_atomic
from photocorpus.progress import ProgressUpdate

JOBS_DIR = ".serve-jobs"
WRITE_EVERY_S = 0.5


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


def new_server_id() -> str:
    """A name for one start of the server, shared by all its workers (see the module docstring)."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"


class ExportJobs:
    """Starts and tracks export jobs of one corpus folder, visible to every worker of one server."""

    def __init__(self, corpus_root: Path, server_id: str | None = None) -> None:
        self.root = corpus_root
        self.folder = corpus_root / "exports" / JOBS_DIR / (server_id or new_server_id())
        self._jobs: dict[int, ExportJob] = {}
        self._lock = threading.Lock()

    def _claim_id(self) -> int:
        """The lowest free job id, claimed by creating its file exclusively (safe across workers)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        job_id = len(list(self.folder.glob("*.json"))) + 1
        while True:
            try:
                os.close(os.open(self.folder / f"{job_id}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return job_id
            except FileExistsError:
                job_id += 1

    def _save(self, job: ExportJob) -> None:
        write_atomic(self.folder / f"{job.id}.json", json.dumps(job.as_dict()), fsync=False)

    def start(self, fmt: str, *, photo_ids: list[int] | None, splits: list[str] | None) -> ExportJob:
        """Check the request, then run the export in a thread; returns at once with the job."""
        from photocorpus.api import EXPORT_FORMATS
        from photocorpus.errors import ParameterError

        if fmt not in EXPORT_FORMATS:
            raise ParameterError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {str(fmt)[:40]!r}")
        job_id = self._claim_id()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"serve-{stamp}-{job_id}-{fmt}" + (".parquet" if fmt == "parquet" else "")
        job = ExportJob(
            job_id, fmt, None if photo_ids is None else len(photo_ids), str(self.root / "exports" / name)
        )
        with self._lock:
            self._jobs[job_id] = job
        self._save(job)
        thread = threading.Thread(
            target=self._run, args=(job, photo_ids, splits), name=f"photocorpus-export-{job_id}", daemon=True
        )
        thread.start()
        return job

    def get(self, job_id: int) -> ExportJob | None:
        """A job of this server, started by this worker or another one."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        try:
            saved = json.loads((self.folder / f"{int(job_id)}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):  # unknown, or claimed by a worker that has not written it yet
            return None
        return ExportJob(**saved)

    def _run(self, job: ExportJob, photo_ids: list[int] | None, splits: list[str] | None) -> None:
        import photocorpus as pc

        written = [0.0]

        def progress(update: ProgressUpdate) -> None:
            job.done = update.done
            job.total = update.total
            if time.monotonic() - written[0] >= WRITE_EVERY_S:
                written[0] = time.monotonic()
                self._save(job)

        job.state = "running"
        self._save(job)
        try:
            report = pc.export_photos(
                self.root, job.format, job.path, splits=splits, photo_ids=photo_ids, progress=progress
            )
        except Exception as exc:  # the job's answer, not a crash of the server
            job.state = "failed"
            job.error = f"{type(exc).__name__}: {exc}"[:500]
            self._save(job)
            return
        job.counts = dict(report.counts)
        job.state = "done"
        self._save(job)
