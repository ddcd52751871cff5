"""A damaged catalog: every command stops with one clear message, and ``verify`` reports the damage.

A real catalog of 300 imported photos is damaged three ways (issue #23, item 5): truncated to half,
8 KB of garbage written in its middle, and emptied to 0 bytes beside its images. Each command runs
in a subprocess as a user would run it. It must exit non-zero without a traceback, name
``photocorpus verify`` and the recovery steps (``sqlite3 .recover``; for the emptied catalog, the
backup), and leave the damaged file exactly as it was: no new empty catalog over an emptied one.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from photocorpus import corpus as corpus_module
from photocorpus.corpus import CATALOG_FILE, Corpus
from photocorpus.errors import CatalogCorruptError
from photocorpus.importing import import_folder
from tests.conftest import run_cli

pytestmark = pytest.mark.reliability

PHOTOS = 300
COMMANDS = {
    "status": ["status"],
    "verify": ["verify"],
    "import": ["import", "{src}", "--quiet", "--workers", "1"],
    "fetch --retry-failed": ["fetch", "--retry-failed", "--quiet"],
    "dedup": ["dedup", "--quiet"],
}
DAMAGES = ["truncated_to_half", "garbage_in_the_middle", "emptied"]


@pytest.fixture(scope="module")
def source(instany_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src") / "nyc"
    src.mkdir()
    for path in sorted(instany_images.glob("*.jpg"))[:PHOTOS]:
        shutil.copy(path, src / path.name)
    return src.parent


@pytest.fixture(scope="module")
def healthy(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real corpus, closed: 300 real photos imported (in this process: the commands under test are
    what runs in subprocesses)."""
    root = tmp_path_factory.mktemp("healthy") / "corpus"
    with Corpus.create(root) as corpus:
        assert import_folder(corpus, source, workers=1).imported == PHOTOS
    assert not (root / f"{CATALOG_FILE}-wal").exists()  # closed and checkpointed: one file to damage
    return root


def _damaged(healthy: Path, where: Path, damage: str) -> Path:
    root = where / "corpus"
    shutil.copytree(healthy, root)
    catalog = root / CATALOG_FILE
    size = catalog.stat().st_size
    if damage == "truncated_to_half":
        with open(catalog, "r+b") as fh:
            fh.truncate(size // 2)
    elif damage == "garbage_in_the_middle":
        with open(catalog, "r+b") as fh:
            fh.seek(size // 2)
            fh.write(random.Random(23).randbytes(8192))
    elif damage == "garbage_in_the_photos_table":
        # the root page of `photos`, wherever later migrations' tables and indexes put it: a scan
        # of that table must read it (the file's middle may hold an index page no table scan reads)
        with contextlib.closing(sqlite3.connect(catalog)) as conn:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            (rootpage,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'photos'").fetchone()
        with open(catalog, "r+b") as fh:
            fh.seek((rootpage - 1) * page_size)
            fh.write(random.Random(23).randbytes(page_size))
    elif damage == "emptied":
        catalog.write_bytes(b"")
    return root


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", DAMAGES)
def test_every_command_stops_with_the_recovery_steps(
    damage: str, healthy: Path, source: Path, tmp_path: Path
) -> None:
    """status, import, fetch --retry-failed and dedup: exit 2, one `error:` line, no traceback;
    verify: exit 1, the damage as its finding and the steps. The damaged file is left as it was.
    (The commands run at once, each on its own copy.)"""

    def run(name: str) -> tuple[str, object, str, str]:
        root = _damaged(healthy, tmp_path / name.replace(" ", "_"), damage)
        before = _digest(root / CATALOG_FILE)
        args = [a.format(src=source) for a in COMMANDS[name]]
        proc = run_cli(*args, "--corpus", str(root), check=False, timeout=120)
        return name, proc, before, _digest(root / CATALOG_FILE)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, COMMANDS))
    for name, proc, before, after in results:
        out, err, rc = proc.stdout, proc.stderr, proc.returncode  # type: ignore[attr-defined]
        where = f"{name} on a catalog {damage}: rc={rc}\n{err}\n{out}"
        assert "Traceback" not in err + out and "sqlite3.DatabaseError" not in err + out, where
        assert after == before, f"{name} wrote into the damaged catalog"
        if name == "verify":
            assert rc == 1 and out.startswith("integrity_check: "), where
            assert "integrity_check: ok" not in out, where
            steps = out
        else:
            assert rc == 2 and err.startswith("error: the catalog "), where
            steps = err
            assert "photocorpus verify" in err or damage == "emptied", where
        if damage == "emptied":
            assert "empty (0 bytes)" in steps and "backup" in steps, where
        else:
            assert ".recover" in steps and "-wal" in steps, where


def test_damage_found_during_a_stage_stops_it_with_the_same_message(
    healthy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog too big for the open-time quick_check (simulated: a 0-byte limit) opens; the stage
    that reads a damaged page then stops with CatalogCorruptError, not a raw sqlite3 error. (The
    checks refuse damage only: the undamaged catalog and a new, empty one open and verify.)"""
    shutil.copytree(healthy, tmp_path / "healthy")
    Corpus.create(tmp_path / "new").close()
    for name, photos in (("healthy", PHOTOS), ("new", 0)):
        with Corpus.open(tmp_path / name) as corpus:
            assert corpus.count_photos() == photos and corpus.verify().ok
    root = _damaged(healthy, tmp_path / "damaged", "garbage_in_the_photos_table")
    monkeypatch.setattr(corpus_module, "QUICK_CHECK_MAX_BYTES", 0)
    corpus = Corpus.open(root)
    tables = [r[0] for r in corpus.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    with pytest.raises(CatalogCorruptError, match=r"malformed.*photocorpus verify.*\.recover"), corpus:
        for table in tables:
            corpus.conn.execute(f"SELECT * FROM {table}").fetchall()  # every page of every table
