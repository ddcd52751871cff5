"""Chaos helpers shared by the kill tests: run ``photocorpus`` in its own process group, SIGKILL the
whole group (workers included) at a chosen moment, read progress from the catalog without taking
locks, and check a corpus's consistency afterwards.

Seeds: :func:`chaos_plan` reads ``PHOTOCORPUS_CHAOS_SEED`` (replay) and ``PHOTOCORPUS_CHAOS_KILLS``
(the full count) and prints the seed, so a failing run can always be reproduced.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def chaos_plan(default_kills: int) -> tuple[int, int, random.Random]:
    """(seed, kills, rng) from the environment, the seed printed for the log."""
    seed = int(os.environ.get("PHOTOCORPUS_CHAOS_SEED", random.randrange(1 << 30)))
    kills = int(os.environ.get("PHOTOCORPUS_CHAOS_KILLS", str(default_kills)))
    print(f"chaos seed {seed}, {kills} kills")
    return seed, kills, random.Random(seed)


def catalog_count(corpus_dir: Path, sql: str) -> int:
    """``sql``'s single number, read-only; 0 while the catalog is missing, busy or not migrated yet."""
    try:
        conn = sqlite3.connect(f"file:{corpus_dir / 'catalog.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute(sql).fetchone()
            return int(row[0] or 0) if row else 0
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def photocorpus_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "photocorpus", *args]


@dataclass
class KillOutcome:
    killed: bool  # False: the run ended by itself first (then it must have succeeded)
    after_s: float  # seconds from start to the kill (or to the exit)
    progress_before: int
    progress_at_kill: int


def run_and_kill(
    args: Sequence[str],
    *,
    progress: Callable[[], int],
    rng: random.Random,
    kill_after_progress: int | None = None,
    kill_after_s: float | None = None,
    jitter_s: float = 0.4,
    env: dict[str, str] | None = None,
    timeout_s: float = 300,
) -> KillOutcome:
    """Start ``photocorpus ARGS``; SIGKILL its process group once ``progress()`` reaches
    ``kill_after_progress`` (then a random ``jitter_s`` more, to land anywhere inside the next batch)
    or once ``kill_after_s`` seconds have passed, whichever comes first."""
    before = progress()
    proc = subprocess.Popen(
        photocorpus_cmd(*args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    started = time.monotonic()
    deadline = started + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        elapsed = time.monotonic() - started
        if kill_after_s is not None and elapsed >= kill_after_s:
            break
        if kill_after_progress is not None and progress() >= kill_after_progress:
            time.sleep(rng.uniform(0, jitter_s))
            break
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        return KillOutcome(True, time.monotonic() - started, before, progress())
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, f"photocorpus {' '.join(args)} failed ({proc.returncode}):\n{err}"
    return KillOutcome(False, time.monotonic() - started, before, progress())


def duplicate_rows(corpus_dir: Path) -> dict[str, int]:
    """Rows that must be unique but are not: {what: how many extra}."""
    checks = {
        "photos": "SELECT COUNT(*) - COUNT(DISTINCT source || '/' || source_id) FROM photos",
        "files per photo": "SELECT COUNT(*) - COUNT(DISTINCT photo_id) FROM files",
        "files per path": "SELECT COUNT(*) - COUNT(DISTINCT path) FROM files",
        "stage rows": "SELECT COUNT(*) - COUNT(DISTINCT photo_id || '/' || stage) FROM stages",
        "labels": "SELECT COUNT(*) - COUNT(DISTINCT photo_id || '/' || label) FROM photo_labels",
    }
    conn = sqlite3.connect(corpus_dir / "catalog.sqlite")
    try:
        out = {name: conn.execute(sql).fetchone()[0] for name, sql in checks.items()}
    finally:
        conn.close()
    return {k: v for k, v in out.items() if v}
