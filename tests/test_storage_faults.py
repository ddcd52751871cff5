"""Disk full and permission errors during fetch and featurize writes, and two processes on one corpus.

The import stage has its own (tests/test_import_faults.py). Here the writer fails at its N-th call:
the run must stop with a clear message naming the cause and the next step, leave everything already
committed intact, and the next run must finish the job. Then two fetches run at once on one corpus
while a third process reads ``status``: every photo is fetched exactly once and the catalog verifies.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from photocorpus import corpus_files, feature_store
from photocorpus.config import FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.errors import PhotocorpusError, StorageError
from photocorpus.fetch.stage import fetch_photos
from photocorpus.sources.urls import harvest_url_list
from tests.chaos import duplicate_rows
from tests.conftest import run_cli
from tests.fixtures.image_server import ImageServer, Route
from tests.helpers import files_on_disk

pytestmark = pytest.mark.reliability

FAULTS = [
    pytest.param(OSError(errno.ENOSPC, "No space left on device"), "disk is full", id="ENOSPC"),
    pytest.param(PermissionError(errno.EACCES, "Permission denied"), "permission denied", id="EACCES"),
]


def _fail_from_call(monkeypatch: pytest.MonkeyPatch, target: object, name: str, n: int, exc: OSError) -> None:
    """Make ``target.name`` raise ``exc`` from its ``n``-th call on (a disk that fills up and stays full)."""
    original = getattr(target, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= n:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)


def _url_list(server: ImageServer, photos: list[Path], path: Path) -> Path:
    path.write_text("".join(server.add(f"/{p.name}", Route(p.read_bytes())) + "\n" for p in photos))
    return path


def _fetch_settings() -> FetchSettings:
    return FetchSettings(allow_private_urls=True, host_rate_per_s=0, workers=1, min_side_px=0, batch_size=20)


@pytest.mark.parametrize(("exc", "words"), FAULTS)
def test_fetch_stops_clearly_on_a_failing_disk_and_the_next_run_continues(
    instany_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: OSError, words: str
) -> None:
    photos = sorted(instany_images.glob("*.jpg"))[:120]
    with ImageServer() as server:
        server.record_hits = False
        corpus = Corpus.create(tmp_path / "c")
        harvest_url_list(corpus, _url_list(server, photos, tmp_path / "urls.txt"))
        # the driver renames each finished download into images/: the 50th rename fails
        _fail_from_call(monkeypatch, corpus_files.os, "replace", 50, exc)
        with pytest.raises(StorageError, match=words) as info:
            fetch_photos(corpus, _fetch_settings())
        assert "re-run" in str(info.value)
        report = corpus.verify()
        assert report.integrity == "ok" and report.missing_files == [], report
        committed = corpus.status_summary()["stages"].get("fetch", {}).get("done", 0)
        assert 20 <= committed < len(photos)
        before = {p: h for p, h in files_on_disk(corpus.root).items() if p not in report.orphan_files}
        monkeypatch.undo()
        fetch_photos(corpus, _fetch_settings())
        assert corpus.status_summary()["stages"]["fetch"] == {"done": len(photos)}
        after = files_on_disk(corpus.root)
        assert all(after[p] == h for p, h in before.items())  # nothing committed was touched
        assert corpus.verify().ok
        assert duplicate_rows(corpus.root) == {}
        corpus.close()


@pytest.mark.parametrize(("exc", "words"), FAULTS)
def test_featurize_stops_clearly_on_a_failing_disk_and_the_next_run_continues(
    instany_images: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    exc: OSError,
    words: str,
) -> None:
    from photocorpus.features.pipeline import featurize_images
    from photocorpus.importing import import_folder

    monkeypatch.setenv("PHOTOCORPUS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "featurize-onnx-cache"))
    src = tmp_path / "src" / "nyc"
    src.mkdir(parents=True)
    for p in sorted(instany_images.glob("*.jpg"))[2900:2948]:
        (src / p.name).write_bytes(p.read_bytes())
    corpus = Corpus.create(tmp_path / "c")
    import_folder(corpus, src.parent, workers=1)
    # a shard is four atomic .npy writes (rows and ids of the features and of the logits): the 9th
    # write fails, so a shard or two (8-16 rows) are committed before the disk "fills up"
    _fail_from_call(monkeypatch, corpus_files.os, "replace", 9, exc)
    with pytest.raises(PhotocorpusError, match=words) as info:
        featurize_images(corpus, workers=0, shard_rows=8, batch_size=8)
    assert "re-run" in str(info.value)
    folder = corpus.abs_path(feature_store.feature_dir("efficientnet-lite0"))
    # the failed write cleaned up its scratch file (corpus_files.atomic_path's are hidden: ".<name>...")
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
    fs = feature_store.open_feature_set(corpus, "efficientnet-lite0")
    committed = fs.photo_ids().tolist()
    assert 8 <= len(committed) <= 16 and len(set(committed)) == len(committed)
    kept = np.array(fs.matrix(), dtype=np.float32)
    assert corpus.verify().integrity == "ok"
    monkeypatch.undo()
    monkeypatch.setenv("PHOTOCORPUS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "featurize-onnx-cache"))
    featurize_images(corpus, workers=0, shard_rows=8, batch_size=8)
    fs = feature_store.open_feature_set(corpus, "efficientnet-lite0")
    ids = fs.photo_ids().tolist()
    assert len(ids) == len(set(ids)) == 48
    rows = fs.rows_for(committed)
    assert np.array_equal(np.asarray(fs.matrix(), dtype=np.float32)[rows], kept)  # committed rows unchanged
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no scratch files left
    corpus.close()


def test_two_fetches_and_a_status_reader_share_one_corpus(instany_images: Path, tmp_path: Path) -> None:
    photos = sorted(instany_images.glob("*.jpg"))[:600]
    with ImageServer() as server:
        server.record_hits = False
        corpus_dir = tmp_path / "c"
        run_cli("init", str(corpus_dir))
        run_cli(
            "harvest", "urls", str(_url_list(server, photos, tmp_path / "urls.txt")), "-C", str(corpus_dir)
        )
        args = ["fetch", "-C", str(corpus_dir), "-q", "--allow-private-urls", "--host-rate", "0",
                "--workers", "1", "--min-side", "0"]  # fmt: skip
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "photocorpus", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        statuses = []
        while any(p.poll() is None for p in procs):
            out = run_cli("status", "--json", "-C", str(corpus_dir))  # a reader never blocks on the writers
            statuses.append(json.loads(out.stdout)["stages"].get("fetch", {}).get("done", 0))
            time.sleep(0.05)
        results = [(p.returncode, *p.communicate()) for p in procs]
    for code, _out, err in results:
        # the second writer either shares the work or refuses clearly; it never crashes
        assert code == 0 or ("busy" in err.lower() or "another" in err.lower()), err
        assert "Traceback" not in err and "database is locked" not in err, err
    assert statuses == sorted(statuses)  # readers only ever see whole transactions
    if any(code != 0 for code, *_ in results):
        run_cli(*args)  # the refused one, run again afterwards
    with Corpus.open(corpus_dir) as corpus:
        assert corpus.status_summary()["stages"]["fetch"] == {"done": len(photos)}
        report = corpus.verify()
        assert report.ok, report
    assert duplicate_rows(corpus_dir) == {}
    assert len(files_on_disk(corpus_dir)) == len(photos)


_PARTIAL_WRITE = """
import resource, signal, sys
from pathlib import Path
from photocorpus import corpus_files
from photocorpus.errors import StorageError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    corpus_files.write_tmp(Path(sys.argv[1]), b"x" * (1024 * 1024))
except StorageError as exc:
    print("StorageError:", exc)
"""


def test_a_write_that_fails_halfway_leaves_no_scratch_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scratch write that dies after some bytes reached the disk (a file-size limit: the first 64 KiB
    are written, then EFBIG) raises StorageError and removes the partial file; so does a failing fsync."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", _PARTIAL_WRITE, str(scratch)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "StorageError: cannot write" in proc.stdout and "re-run" in proc.stdout, proc.stdout
    assert list(scratch.iterdir()) == []

    def fsync_fails(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(corpus_files.os, "fsync", fsync_fails)
    with pytest.raises(StorageError, match="disk is full"):
        corpus_files.write_tmp(scratch, b"y" * 10_000)
    assert list(scratch.iterdir()) == []
