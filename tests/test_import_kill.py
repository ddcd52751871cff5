"""kill -9 during an import, then re-runs: the same corpus as one uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from photocorpus.config import ImportSettings, Settings
from photocorpus.corpus import Corpus
from tests.chaos import catalog_count, run_and_kill
from tests.conftest import run_cli
from tests.helpers import catalog_dump, files_on_disk


def _committed_photos(corpus_dir: Path) -> int:
    return catalog_count(corpus_dir, "SELECT COUNT(*) FROM stages WHERE stage = 'fetch'")


def _import_and_kill(src: Path, corpus_dir: Path, kill_after: int, rng: random.Random) -> bool:
    """Start an import, SIGKILL its whole process group once ``kill_after`` photos are committed, plus
    up to 0.3 s: anywhere inside the next batch, not just after a commit."""
    args = ["import", str(src), "-C", str(corpus_dir), "-q", "--workers", "2"]
    outcome = run_and_kill(
        args,
        progress=lambda: _committed_photos(corpus_dir),
        rng=rng,
        kill_after_progress=kill_after,
        jitter_s=0.3,
    )
    return outcome.killed


def test_sigkill_mid_import_then_resume_equals_uninterrupted(instany_images: Path, tmp_path: Path) -> None:
    seed = int(os.environ.get("PHOTOCORPUS_CHAOS_SEED", random.randrange(1 << 30)))
    print(f"chaos seed {seed}")
    rng = random.Random(seed)

    reference = tmp_path / "reference"
    run_cli("init", str(reference))
    run_cli("import", str(instany_images), "-C", str(reference), "-q", "--workers", "2")

    chaos = tmp_path / "chaos"
    Corpus.create(chaos, Settings(import_=ImportSettings(batch_size=64))).close()
    kills = 0
    # Kill points stop at three quarters, so the final re-run always has photos left to resume.
    for kill_after in sorted(rng.sample(range(1, 3007 * 3 // 4), 3)):
        kills += _import_and_kill(instany_images, chaos, kill_after, rng)
    assert kills >= 2, f"the import finished before it could be killed (seed {seed})"
    committed = _committed_photos(chaos)
    assert committed < 3007
    resumed = run_cli("import", str(instany_images), "-C", str(chaos), "-q", "--workers", "2")
    # the resume redoes nothing that was committed (redoing it would give the same corpus, slower)
    assert f" {committed} already in the corpus," in resumed.stdout, resumed.stdout

    assert catalog_dump(chaos) == catalog_dump(reference), f"seed {seed}"
    assert files_on_disk(chaos) == files_on_disk(reference)
    with Corpus.open(chaos) as corpus:
        report = corpus.verify()
        assert report.integrity == "ok"
        assert report.orphan_files == [] and report.missing_files == [] and report.dangling_intents == 0
        assert corpus.count_photos() == 3007
    assert not any((chaos / ".tmp").glob("*/*.part"))


def test_ctrl_c_stops_after_the_batch_and_the_next_run_resumes(instany_images: Path, tmp_path: Path) -> None:
    corpus_dir = tmp_path / "c"
    Corpus.create(corpus_dir, Settings(import_=ImportSettings(batch_size=64))).close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "photocorpus", "import", str(instany_images), "-C", str(corpus_dir), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and _committed_photos(corpus_dir) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "re-run the same command to resume" in err
    assert "Traceback" not in err
    done = _committed_photos(corpus_dir)
    assert 200 <= done < 3007
    with Corpus.open(corpus_dir) as corpus:
        assert corpus.verify().ok  # a clean stop leaves no dangling files or intents
    run_cli("import", str(instany_images), "-C", str(corpus_dir), "-q")
    with Corpus.open(corpus_dir) as corpus:
        assert corpus.count_photos() == 3007
        assert corpus.verify().ok
