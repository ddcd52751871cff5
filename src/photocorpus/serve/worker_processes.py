"""``photocorpus serve --workers N``: N uvicorn worker processes behind one port.

Why processes: the app's Python work (templates, row dicts, JSON) holds the GIL, so one process uses
at most one core however many threads it has. Whether a second worker pays depends on the load: it
helps when Python work dominates, not while SQLite does (see :data:`DEFAULT_WORKERS`).

What keeps N processes one server:

* the settings, the token included, reach every worker through one environment variable
  (:data:`SETTINGS_ENV`) that the command sets before uvicorn spawns them, so every worker accepts
  the same token and binds the same host and port checks;
* export jobs are files (:mod:`.export_jobs`) under one server id shared by the workers, so a job
  started on one worker is polled from any;
* the caches are per process and checked against the catalog's latest decision
  (:meth:`~photocorpus.serve.context.ServeContext.cached`), so a decision answered by one worker
  shows on the next page any worker renders;
* the "more like this" index is saved in the corpus and built under a file lock, so workers load it
  instead of building it twice;
* a worker dies with the command (Linux ``PR_SET_PDEATHSIG``): ``kill -9`` of ``photocorpus serve``
  leaves no worker answering or writing behind it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from typing import Any

SETTINGS_ENV = "PHOTOCORPUS_SERVE_SETTINGS"
# One by default: on the 100,000-photo load benchmark (2 shared cores, 50 clients) two workers
# completed about as many requests as one (78.6 against 80.0 per second): SQLite and numpy already run
# outside the GIL in the thread pool, and each worker holds its own caches and indexes in memory.
DEFAULT_WORKERS = 1
PR_SET_PDEATHSIG = 1


def settings_for_workers(**settings: Any) -> str:
    """The value of :data:`SETTINGS_ENV`: :func:`photocorpus.serve.app.create_app`'s arguments."""
    return json.dumps(settings)


def die_with_parent() -> None:
    """Ask the kernel to kill this worker when the process that started it dies (Linux only; elsewhere
    uvicorn's own shutdown still stops workers on Ctrl-C, only a kill -9 would leave them running)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the call above
        os._exit(1)


def app_from_environment() -> Any:
    """The app of one worker (uvicorn calls this factory in each worker process)."""
    from photocorpus.errors import ParameterError
    from photocorpus.serve.app import create_app

    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise ParameterError(f"{SETTINGS_ENV} is not set; start workers with `photocorpus serve --workers N`")
    die_with_parent()
    settings = json.loads(raw)
    return create_app(settings.pop("corpus_path"), **settings)
