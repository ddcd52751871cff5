"""Import under storage faults and concurrent processes: clear stops, nothing committed is damaged."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from photocorpus import corpus_files
from photocorpus.corpus import Corpus
from photocorpus.errors import StorageError
from photocorpus.importing import import_folder
from tests.conftest import run_cli
from tests.helpers import files_on_disk


def _source(instany_images: Path, tmp_path: Path, n: int, name: str = "src") -> Path:
    src = tmp_path / name / "nyc"
    src.mkdir(parents=True)
    for p in sorted(instany_images.glob("*.jpg"))[:n]:
        shutil.copy(p, src / p.name)
    return src.parent


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, target: object, name: str, n: int, exc: OSError) -> None:
    original = getattr(target, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= n:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)


@pytest.mark.parametrize(
    ("target", "name", "exc", "words"),
    [
        (corpus_files.os, "fsync", OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
        (corpus_files.os, "replace", PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    ],
)
def test_disk_full_or_permission_error_stops_clearly_and_the_next_run_continues(
    instany_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target, name, exc, words
) -> None:
    src = _source(instany_images, tmp_path, 300)
    corpus = Corpus.create(tmp_path / "c")
    corpus.settings.import_.batch_size = 50
    _fail_on_call(monkeypatch, target, name, 120, exc)  # fail on the 120th write: two batches are in
    with pytest.raises(StorageError, match=words) as info:
        import_folder(corpus, src, workers=1)
    assert "re-run" in str(info.value)
    committed = corpus.count_photos()
    assert 50 <= committed < 300
    report = corpus.verify()
    assert report.integrity == "ok" and report.missing_files == []
    before = {p: h for p, h in files_on_disk(corpus.root).items() if p not in report.orphan_files}
    monkeypatch.undo()
    import_folder(corpus, src, workers=1)
    assert corpus.count_photos() == 300
    after = files_on_disk(corpus.root)
    assert all(after[p] == h for p, h in before.items())  # nothing committed was touched
    assert corpus.verify().ok
    assert not any((corpus.root / ".tmp").rglob("*.part"))
    corpus.close()


def test_two_importers_and_a_status_reader_share_one_corpus(instany_images: Path, tmp_path: Path) -> None:
    a = _source(instany_images, tmp_path, 400, "a")
    b_dir = tmp_path / "b" / "brooklyn"
    b_dir.mkdir(parents=True)
    for p in sorted(instany_images.glob("*.jpg"))[400:800]:
        shutil.copy(p, b_dir / p.name)
    corpus_dir = tmp_path / "c"
    run_cli("init", str(corpus_dir))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "photocorpus",
                "import",
                str(src),
                "-C",
                str(corpus_dir),
                "-q",
                "--workers",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for src in (a, b_dir.parent)
    ]
    statuses = []
    while any(p.poll() is None for p in procs):
        out = run_cli("status", "--json", "-C", str(corpus_dir))  # readers never block on the writers
        statuses.append(json.loads(out.stdout)["photos"])
        time.sleep(0.05)
    for p in procs:
        _out, err = p.communicate()
        assert p.returncode == 0, err
    assert statuses == sorted(statuses)  # monotone: readers only ever see whole transactions
    with Corpus.open(corpus_dir) as corpus:
        assert corpus.count_photos() == 800
        assert corpus.status_summary()["labels"] == {"nyc": 400, "brooklyn": 400}
        assert corpus.verify().ok
        dupes = corpus.conn.execute("SELECT COUNT(*) FROM files GROUP BY path HAVING COUNT(*) > 1").fetchall()
        assert dupes == []
    assert os.path.exists(corpus_dir / "catalog.sqlite")
