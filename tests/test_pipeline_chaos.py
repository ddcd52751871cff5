"""Pipeline chaos: harvest (Flickr-compatible server) -> fetch -> curate -> featurize, each stage
SIGKILLed (process group, workers included) at random moments and resumed, must end with the same
corpus as one uninterrupted run: the photo set, stored file hashes, stage rows, curation and feature
rows; ``PRAGMA integrity_check`` ok; no orphan files, no rows without files, no duplicate rows.

The suite does 2 kills per stage by default (8 in all); ``PHOTOCORPUS_CHAOS_KILLS=20`` runs the full
count (20 per stage, 80 in all; about ten minutes on two busy cores). The seed is printed and replays
with ``PHOTOCORPUS_CHAOS_SEED``. Each kill's stage, moment and progress are printed for the log.

Kill moments: harvest, fetch and featurize commit in small batches here (3 photos a page, 4 photos a
transaction, 4 rows a shard), so a kill waits for a random progress threshold (at least one commit
past where the run started) and then a random 0-0.1 s more (about one commit), which lands it in
downloads, renders, renames, inference or the commit itself. Curate commits whole phases, so its
kills come at a uniformly random time within an uninterrupted curate's duration (start-up, hashing,
grouping, quality, splits).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from photocorpus import feature_store
from photocorpus.config import FeaturizeSettings, FetchSettings, FlickrSettings, Settings
from photocorpus.corpus import Corpus
from tests.chaos import catalog_count, chaos_plan, duplicate_rows, run_and_kill
from tests.conftest import run_cli
from tests.fixtures.flickr_server import FlickrTestServer, ServerConfig, make_population

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

PHOTOS = 150
FEATURES = "efficientnet-lite0"
PROGRESS = {
    "harvest": "SELECT COUNT(*) FROM photos",
    "fetch": "SELECT COUNT(*) FROM stages WHERE stage = 'fetch'",
    "featurize": f"SELECT COALESCE(SUM(rows), 0) FROM feature_sets WHERE name = '{FEATURES}'",
}
# after the threshold, a random extra wait up to this long: about one or two commits of each stage
JITTER_S = {"harvest": 0.05, "fetch": 0.05, "featurize": 0.1}


def _settings(kills_per_stage: int) -> Settings:
    return Settings(
        flickr=FlickrSettings(calls_per_hour=3.6e9, per_page=3, backoff_base_s=0.01, backoff_cap_s=0.05),
        # fetch commits at least once a second (time-based once every photo is in flight): a slow
        # host rate makes those commits small enough for 20 kills that each land past a new one
        fetch=FetchSettings(
            batch_size=4, host_rate_per_s=3 if kills_per_stage > 5 else 40, min_side_px=0, workers=2
        ),
        featurize=FeaturizeSettings(batch_size=4, shard_rows=4),
    )


def _stage_args(stage: str, corpus: Path, server: FlickrTestServer) -> list[str]:
    common = ["--corpus", str(corpus), "--quiet"]
    return {
        "harvest": ["harvest", "flickr", "--query", "cat", "--min-upload", "2015-01-01",
                    "--max-upload", "2016-06-01", "--api-url", server.api_url, *common],
        "fetch": ["fetch", "--allow-private-urls", "--workers", "2", *common],
        "curate": ["curate", "--workers", "2", *common],
        "featurize": ["featurize", "--workers", "1", *common],
    }[stage]  # fmt: skip


def _snapshot(corpus_dir: Path) -> dict[str, object]:
    """Everything a stage decides, keyed by (source, source_id) so it is independent of row ids."""
    conn = sqlite3.connect(corpus_dir / "catalog.sqlite")
    try:
        key = {r[0]: r[1] for r in conn.execute("SELECT id, source || '/' || source_id FROM photos")}

        def rows(sql: str) -> list[tuple]:
            return sorted(
                tuple(key.get(v, v) if i == 0 else v for i, v in enumerate(r)) for r in conn.execute(sql)
            )

        curation_cols = [
            r[1]
            for r in conn.execute("PRAGMA table_info(curation)")
            if r[1] not in ("photo_id", "updated_at")
        ]
        curation = sorted(
            (
                key[r[0]],
                *[
                    key.get(v, v) if c in ("dup_group", "duplicate_of") else v
                    for c, v in zip(curation_cols, r[1:], strict=True)
                ],
            )
            for r in conn.execute(f"SELECT photo_id, {', '.join(curation_cols)} FROM curation")
        )
        snapshot: dict[str, object] = {
            "photos": rows(
                "SELECT id, title, caption, tags, owner, lat, lon, license, uploaded_at, page_url FROM photos"
            ),
            "labels": rows("SELECT photo_id, label FROM photo_labels"),
            "urls": rows("SELECT photo_id, url FROM image_urls"),
            "stages": rows("SELECT photo_id, stage, status, reason FROM stages"),
            "files": rows("SELECT photo_id, path, sha256, width, height, bytes, format FROM files"),
            "curation": curation,
            "image_labels": rows("SELECT photo_id, model, rank, class_index FROM image_labels"),
            "image_categories": rows("SELECT photo_id, model, ontology, category FROM image_categories"),
            "file_intents": conn.execute("SELECT COUNT(*) FROM file_intents").fetchone()[0],
        }
    finally:
        conn.close()
    snapshot["image_bytes"] = {
        p.relative_to(corpus_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (corpus_dir / "images").rglob("*")
        if p.is_file()
    }
    with Corpus.open(corpus_dir) as corpus:
        fs = feature_store.open_feature_set(corpus, FEATURES)
        ids = fs.photo_ids()
        matrix = np.asarray(fs.matrix(), dtype=np.float32)
        snapshot["feature_rows"] = {key[int(i)]: matrix[row] for row, i in enumerate(ids)}
        snapshot["feature_ids_unique"] = len(set(ids.tolist())) == len(ids)
    return snapshot


def _assert_same(chaos: dict, reference: dict, seed: int) -> None:
    for name in reference:
        if name == "feature_rows":
            continue
        assert chaos[name] == reference[name], f"{name} differs from the uninterrupted run (seed {seed})"
    assert chaos["feature_rows"].keys() == reference["feature_rows"].keys(), f"seed {seed}"
    worst = max(
        float(np.max(np.abs(chaos["feature_rows"][k] - v))) for k, v in reference["feature_rows"].items()
    )
    # float16 rows; a resumed run batches photos differently, which may move the last bit or two
    print(f"largest feature difference from the uninterrupted run: {worst}")
    assert worst <= 1e-2, f"feature rows differ by up to {worst} (seed {seed})"


def _assert_consistent(corpus_dir: Path, seed: int) -> None:
    with Corpus.open(corpus_dir) as corpus:
        report = corpus.verify()
        assert report.integrity == "ok", f"seed {seed}"
        assert report.orphan_files == [] and report.missing_files == [], f"seed {seed}: {report}"
        assert report.dangling_intents == 0, f"seed {seed}"
    assert duplicate_rows(corpus_dir) == {}, f"seed {seed}"
    assert not [p for p in (corpus_dir / ".tmp").rglob("*") if p.is_file()], f"seed {seed}"
    folder = corpus_dir / feature_store.feature_dir(FEATURES)
    with Corpus.open(corpus_dir) as corpus:
        registered = set(feature_store.open_feature_set(corpus, FEATURES).shards)
    on_disk = {p.name.split(".")[0] for p in folder.iterdir()}
    assert on_disk == registered, f"unregistered feature shards left behind (seed {seed})"


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The private ONNX cache the featurize tests share (one model export per session)."""
    return {"PHOTOCORPUS_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "featurize-onnx-cache")}


def test_sigkill_every_stage_then_resume_equals_uninterrupted(
    instany_images: Path, tmp_path: Path, cache_env: dict[str, str]
) -> None:
    seed, kills_per_stage, rng = chaos_plan(default_kills=2)
    photos = make_population(PHOTOS, years=1, seed=11, start=datetime(2015, 1, 1, tzinfo=UTC), bursty=False)
    real = sorted(instany_images.glob("*.jpg"))[2000 : 2000 + PHOTOS]
    for photo, path in zip(photos, real, strict=True):
        photo.image = path.read_bytes()
    env = {**cache_env, "FLICKR_API_KEY": "chaos-key-0123456789"}
    log: list[str] = []
    with FlickrTestServer(photos, ServerConfig(api_key=env["FLICKR_API_KEY"], latency_s=0.05)) as server:
        reference = tmp_path / "reference"
        Corpus.create(reference, _settings(kills_per_stage)).close()
        durations = {}
        for stage in ("harvest", "fetch", "curate", "featurize"):
            started = time.monotonic()
            run_cli(*_stage_args(stage, reference, server), env=env)
            durations[stage] = time.monotonic() - started
        assert catalog_count(reference, PROGRESS["featurize"]) == PHOTOS

        chaos = tmp_path / "chaos"
        Corpus.create(chaos, _settings(kills_per_stage)).close()
        for stage in ("harvest", "fetch", "curate", "featurize"):
            args = _stage_args(stage, chaos, server)
            killed = attempts = 0
            if stage in PROGRESS:
                progress = lambda sql=PROGRESS[stage]: catalog_count(chaos, sql)  # noqa: E731
                thresholds = sorted(rng.sample(range(1, PHOTOS - 20), kills_per_stage))
            else:
                progress = lambda: catalog_count(chaos, "SELECT COUNT(*) FROM curation")  # noqa: E731
                thresholds = [None] * kills_per_stage
            while killed < kills_per_stage and attempts < 3 * kills_per_stage:
                attempts += 1
                threshold = thresholds[killed]
                outcome = run_and_kill(
                    args,
                    progress=progress,
                    rng=rng,
                    # at least one more commit in every killed run, so each kill lands in real work
                    kill_after_progress=None if threshold is None else max(threshold, progress() + 1),
                    kill_after_s=None if threshold else rng.uniform(0, durations[stage]),
                    jitter_s=JITTER_S.get(stage, 0),
                    env=env,
                )
                killed += outcome.killed
                line = (
                    f"{stage}: {'killed' if outcome.killed else 'finished'} after {outcome.after_s:.2f} s, "
                    f"progress {outcome.progress_before} -> {outcome.progress_at_kill}"
                    + (f" (threshold {threshold})" if threshold else "")
                )
                log.append(line)
                print(line, flush=True)
                if not outcome.killed and stage in PROGRESS:
                    break  # finished before the remaining thresholds: nothing left to kill
            print(f"{stage}: {killed} kills in {attempts} runs")
            if stage in PROGRESS:
                # the killed runs must not all have finished the stage: the last run below has work left
                assert killed >= kills_per_stage - 1, (
                    f"{stage} finished before it could be killed (seed {seed})"
                )
            else:
                assert killed == kills_per_stage, f"seed {seed}"
            run_cli(*args, env=env)  # the resume that finishes the stage
            _assert_consistent_catalog(chaos, seed)
    print(f"uninterrupted stage times: {', '.join(f'{k} {v:.1f} s' for k, v in durations.items())}")

    _assert_consistent(chaos, seed)
    _assert_same(_snapshot(chaos), _snapshot(reference), seed)


def _assert_consistent_catalog(corpus_dir: Path, seed: int) -> None:
    with Corpus.open(corpus_dir) as corpus:
        report = corpus.verify()
    assert report.ok, f"seed {seed}: {report}"
    assert duplicate_rows(corpus_dir) == {}, f"seed {seed}"
    assert os.path.getsize(corpus_dir / "catalog.sqlite") > 0
