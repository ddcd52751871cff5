"""The Ray executor on a real local Ray (one ``ray.init(num_cpus=2)`` for the module) against a real
HTTP image server on 127.0.0.1: fetch, dedup hashing and featurize of 500 photos give the same catalog
rows, files, hashes and features (within float16 tolerance) as the local executor; and a Ray worker
killed with SIGKILL mid-shard loses nothing committed, the run (or its resume) ends complete with no
duplicate rows.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from photocorpus import feature_store  # noqa: E402
from photocorpus.config import ExecutorSettings, FetchSettings  # noqa: E402
from photocorpus.corpus import Corpus  # noqa: E402
from photocorpus.curate.dedup import hash_photos  # noqa: E402
from photocorpus.features.pipeline import featurize_images  # noqa: E402
from photocorpus.fetch.stage import fetch_photos  # noqa: E402
from photocorpus.sources.urls import harvest_url_list  # noqa: E402
from tests.fixtures.image_server import ImageServer, Route  # noqa: E402
from tests.helpers import catalog_dump, files_on_disk  # noqa: E402

PHOTOS = 500
FAILING = 6  # 404s and undecodable bytes: failure rows must match too
LOCAL = ExecutorSettings(kind="local")
RAY = ExecutorSettings(kind="ray", shard_size=25)


def _fetch_settings(**changes: object) -> FetchSettings:
    # every photo stamped with its provenance: a Ray task must embed the same bytes a local worker does
    base = {
        "allow_private_urls": True,
        "host_rate_per_s": 0,
        "workers": 2,
        "min_side_px": 0,
        "embed_provenance": ["*"],
    }
    return FetchSettings.model_validate({**base, **changes})


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray for the module (its start costs 20-30 s). Workers inherit the environment set
    here: a private ONNX cache, and no usage statistics."""
    cache = tmp_path_factory.mktemp("ray-onnx-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHOTOCORPUS_CACHE_DIR", str(cache))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def url_list(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Iterator[Path]:
    paths = sorted(instany_images.glob("*.jpg"))[:PHOTOS]
    base = tmp_path_factory.mktemp("ray-urls")
    with ImageServer() as server:
        server.record_hits = False
        lines = [server.add(f"/{p.name}", Route(p.read_bytes())) for p in paths]
        lines += [server.add(f"/missing{i}.jpg", Route(status=404)) for i in range(FAILING // 2)]
        lines += [
            server.add(f"/junk{i}.jpg", Route(b"\xff\xd8\xff\xe0 junk" * 40)) for i in range(FAILING // 2)
        ]
        out = base / "urls.txt"
        out.write_text("".join(line + "\n" for line in lines))
        yield out


def _run_stages(corpus_dir: Path, url_list: Path, executor: ExecutorSettings) -> dict[str, object]:
    with Corpus.create(corpus_dir) as corpus:
        harvest_url_list(corpus, url_list)
        fetched = fetch_photos(corpus, _fetch_settings(), executor=executor)
        hashed = hash_photos(corpus, workers=2, executor=executor)
        featurized = featurize_images(corpus, workers=2, threads=2, batch_size=32, executor=executor)
    return {"fetch": fetched, "hash": hashed, "featurize": featurized}


@pytest.fixture(scope="module")
def both_runs(ray_cluster: None, url_list: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("ray-equiv")
    local = _run_stages(base / "local", url_list, LOCAL)
    on_ray = _run_stages(base / "ray", url_list, RAY)
    return {"base": base, "local": local, "ray": on_ray}


def _hash_rows(corpus_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(corpus_dir / "catalog.sqlite")
    try:
        return conn.execute(
            "SELECT photo_id, hashed_sha256, phash, dhash, phash_deframed, dhash_deframed, frame, "
            "hash_degenerate FROM curation ORDER BY photo_id"
        ).fetchall()
    finally:
        conn.close()


def _label_rows(corpus_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(corpus_dir / "catalog.sqlite")
    try:
        return conn.execute(
            "SELECT photo_id, model, rank, class_index FROM image_labels ORDER BY 1, 2, 3"
        ).fetchall()
    finally:
        conn.close()


def test_ray_reports_say_ray_did_the_work(both_runs: dict) -> None:
    for stage in ("fetch", "featurize"):
        assert both_runs["local"][stage].executor == "local"
        assert both_runs["ray"][stage].executor == "ray"
    assert both_runs["ray"]["featurize"].backend.startswith("ray[2 CPU actors]")
    fetched = both_runs["ray"]["fetch"]
    assert (fetched.fetched, fetched.failed, fetched.shards_failed) == (PHOTOS, FAILING, 0)
    assert both_runs["ray"]["hash"].hashed == PHOTOS
    assert both_runs["ray"]["featurize"].computed == PHOTOS


def test_ray_and_local_write_the_same_catalog_and_files(both_runs: dict) -> None:
    local, on_ray = both_runs["base"] / "local", both_runs["base"] / "ray"
    dump = catalog_dump(on_ray)
    assert dump == catalog_dump(local)
    stages = {}
    for _pid, stage, status, _reason in dump["stages"]:
        stages[(stage, status)] = stages.get((stage, status), 0) + 1
    assert stages[("fetch", "done")] == PHOTOS and stages[("fetch", "failed")] == FAILING
    assert stages[("featurize:efficientnet-lite0", "done")] == PHOTOS
    assert files_on_disk(on_ray) == files_on_disk(local)
    assert len(files_on_disk(on_ray)) == PHOTOS
    for _pid, path, _sha, _w, _h, _bytes, _fmt, origin in dump["files"]:
        with Image.open(on_ray / path) as im:  # the Ray task stamped it, with the URL it downloaded
            assert json.loads(im.info["comment"])["image_url"] == origin
    assert _hash_rows(on_ray) == _hash_rows(local) and len(_hash_rows(local)) == PHOTOS
    assert _label_rows(on_ray) == _label_rows(local)


def test_ray_and_local_features_agree_within_float16(both_runs: dict) -> None:
    with Corpus.open(both_runs["base"] / "local") as a, Corpus.open(both_runs["base"] / "ray") as b:
        for name in ("efficientnet-lite0", "efficientnet-lite0.logits"):
            fa, fb = feature_store.open_feature_set(a, name), feature_store.open_feature_set(b, name)
            assert (fa.dtype, fa.rows) == (fb.dtype, fb.rows) == ("float16", PHOTOS)
            ids_a, ids_b = fa.photo_ids(), fb.photo_ids()
            xa = np.asarray(fa.matrix(), dtype=np.float32)[np.argsort(ids_a)]
            xb = np.asarray(fb.matrix(), dtype=np.float32)[np.argsort(ids_b)]
            assert np.array_equal(np.sort(ids_a), np.sort(ids_b))
            # float16 keeps ~3 significant digits; batch composition may move the last float32 bits
            np.testing.assert_allclose(xb, xa, rtol=2e-3, atol=2e-3)
            assert np.abs(xa).max() > 1.0  # real activations, not zeros


# ----------------------------------------------------------------------------------- worker kill
def _descendants_running(task_name: str) -> list[int]:
    """Pids of this test's own Ray workers (descendants of this process) now executing ``task_name``."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if not cmdline.startswith(f"ray::{task_name}".encode()):
            continue
        pid = int(entry)
        while pid > 1:  # walk up the parents: only kill what this test started
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                break
            if pid == me:
                found.append(int(entry))
                break
    return found


class _Killer(threading.Thread):
    """Once the catalog has ``after`` fetch rows, SIGKILL one Ray worker while it runs a fetch shard."""

    def __init__(self, corpus_dir: Path, after: int) -> None:
        super().__init__(daemon=True)
        self.corpus_dir, self.after = corpus_dir, after
        self.killed: list[int] = []
        self.done = threading.Event()

    def _rows(self) -> int:
        try:
            conn = sqlite3.connect(f"file:{self.corpus_dir / 'catalog.sqlite'}?mode=ro", uri=True, timeout=1)
            try:
                return conn.execute("SELECT COUNT(*) FROM stages WHERE stage = 'fetch'").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error:
            return 0

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while not self.done.is_set() and time.monotonic() < deadline:
            if self._rows() >= self.after:
                for pid in _descendants_running("fetch_shard"):
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                    return
            time.sleep(0.005)


def _fetch_with_kill(corpus_dir: Path, executor: ExecutorSettings, after: int, limit: int | None = None):
    killer = _Killer(corpus_dir, after)
    killer.start()
    try:
        with Corpus.open(corpus_dir) as corpus:
            # A paced host keeps each shard busy long enough to be killed in the middle of it. Pacing
            # is per task, so two tasks fetch 80 photos/s: the first commit (after 1 s) comes while
            # shards still run. At 150/s each, a 206-photo run could end before its first commit, and
            # the killer then found no shard to kill.
            settings = _fetch_settings(host_rate_per_s=40)
            report = fetch_photos(corpus, settings, executor=executor, limit=limit)
    finally:
        killer.done.set()
        killer.join()
    return report, killer.killed


def test_killed_ray_worker_loses_nothing_and_resume_completes(
    ray_cluster: None, url_list: Path, both_runs: dict, tmp_path: Path
) -> None:
    corpus_dir = tmp_path / "kill"
    with Corpus.create(corpus_dir) as corpus:
        harvest_url_list(corpus, url_list)
    total = PHOTOS + FAILING

    # 1. Ray's own retry: the killed shard runs again on a fresh worker, within the same run
    first, killed = _fetch_with_kill(corpus_dir, RAY, after=50, limit=300)
    assert killed, "no fetch shard was running to be killed"
    assert first.shards_failed == 0 and first.fetched + first.failed == 300

    # 2. no Ray retries left: the killed shard is lost, the rest is committed, its photos stay pending
    second, killed = _fetch_with_kill(corpus_dir, RAY.model_copy(update={"max_retries": 0}), after=310)
    assert killed, "no fetch shard was running to be killed in the second run"
    assert second.shards_failed == 1
    lost = total - (300 + second.fetched + second.failed)
    assert 1 <= lost <= RAY.shard_size
    with Corpus.open(corpus_dir) as corpus:
        assert corpus.verify().ok  # committed rows all have their files; no orphans, no intents

    # 3. the resume fetches exactly the lost shard
    with Corpus.open(corpus_dir) as corpus:
        third = fetch_photos(corpus, _fetch_settings(), executor=RAY)
    assert third.fetched + third.failed == lost and third.shards_failed == 0

    reference = catalog_dump(both_runs["base"] / "local")
    dump = catalog_dump(corpus_dir)
    assert dump["files"] == reference["files"]  # same rows, no duplicates, same paths and hashes
    fetch_rows = [s for s in dump["stages"] if s[1] == "fetch"]
    assert fetch_rows == [s for s in reference["stages"] if s[1] == "fetch"]
    assert len({s[0] for s in fetch_rows}) == len(fetch_rows) == total
    assert dump["intents"] == []
    assert files_on_disk(corpus_dir) == files_on_disk(both_runs["base"] / "local")
    with Corpus.open(corpus_dir) as corpus:
        assert corpus.status_summary()["stages"]["fetch"] == {"done": PHOTOS, "failed": FAILING}
        verify = corpus.verify()
        assert verify.ok and verify.orphan_files == [] and verify.dangling_intents == 0
    assert not [p for p in (corpus_dir / ".tmp").rglob("*") if p.is_file()]


# ----------------------------------------------------------------------------------- the CLI
def test_cli_fetch_joins_a_running_cluster_by_address(
    ray_cluster: None, url_list: Path, both_runs: dict, tmp_path: Path
) -> None:
    """``photocorpus fetch --executor ray --ray-address HOST:PORT`` in its own process joins the Ray this
    module started (as a driver would join a cluster started with ``ray start --head``), fetches on
    its workers, and writes what the local executor wrote; an address with no cluster is a clear error."""
    from tests.conftest import run_cli

    address = ray.get_runtime_context().gcs_address
    corpus_dir = tmp_path / "cli"
    run_cli("init", str(corpus_dir))
    run_cli("harvest", "urls", str(url_list), "-C", str(corpus_dir), "-q")
    args = [
        "fetch",
        "-C",
        str(corpus_dir),
        "-q",
        "--allow-private-urls",
        "--host-rate",
        "0",
        "--min-side",
        "0",
        "--embed-provenance",
    ]
    proc = run_cli(*args, "--executor", "ray", "--ray-address", address, "--json")
    report = json.loads(proc.stdout)
    assert report["executor"] == "ray" and report["shards_failed"] == 0
    assert (report["fetched"], report["failed"]) == (PHOTOS, FAILING)
    local = both_runs["base"] / "local"
    assert files_on_disk(corpus_dir) == files_on_disk(local)
    fetch_rows = [s for s in catalog_dump(corpus_dir)["stages"] if s[1] == "fetch"]
    assert fetch_rows == [s for s in catalog_dump(local)["stages"] if s[1] == "fetch"]

    bad = run_cli(*args, "--executor", "ray", "--ray-address", "127.0.0.1:1", check=False)
    assert bad.returncode == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in bad.stderr
    assert "Traceback" not in bad.stderr
