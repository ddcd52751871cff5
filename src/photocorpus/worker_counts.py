"""How many worker processes a pool gets: one per core by default, and never absurdly many.

Its own small module, below the settings and the executors alike: ``config`` caps the ``workers`` it
loads and ``executors`` caps what a ``--workers`` option hands a pool, and neither may import the
other (the executors read their settings from ``config``).
"""

from __future__ import annotations

import logging
import os

MAX_WORKERS_PER_CORE = 4  # beyond this, processes only add start-up time and memory, never speed
logger = logging.getLogger("photocorpus.executors")


def default_workers() -> int:
    """One worker per usable CPU core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def capped_workers(workers: int, setting: str) -> int:
    """``workers``, or at most :data:`MAX_WORKERS_PER_CORE` per core, with a warning naming ``setting``.

    Why capped and not refused: a ``corpus.toml`` written on a 64-core server must still run on a
    laptop. Why at all: each worker is a spawned Python process; 100,000 of them took a minute to fail
    with ``BrokenProcessPool`` instead of doing any work. The settings cap their ``workers`` when they
    are loaded; pools cap what a ``--workers`` option passes them directly.
    """
    cores = default_workers()
    limit = MAX_WORKERS_PER_CORE * cores
    if workers <= limit:
        return workers
    logger.warning(
        "%s = %d is more than %d worker processes per CPU core (%d cores here); using %d. "
        "Lower %s (0 means one per core).",
        setting, workers, MAX_WORKERS_PER_CORE, cores, limit, setting,
    )  # fmt: skip
    return limit
