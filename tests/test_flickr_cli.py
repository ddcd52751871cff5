"""The Flickr harvest as a user runs it: SIGKILL and resume, key hygiene, settings from corpus.toml."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from photocorpus.config import FlickrSettings, Settings
from photocorpus.corpus import Corpus
from tests.conftest import run_cli
from tests.fixtures.flickr_server import FlickrTestServer, ServerConfig, make_population

MIN_UPLOAD = "2014-12-01"
MAX_UPLOAD = "2020-06-01"


def _corpus(path: Path, per_page: int = 50, **flickr) -> Path:
    settings = Settings(
        flickr=FlickrSettings(
            calls_per_hour=3.6e9, per_page=per_page, backoff_base_s=0.01, backoff_cap_s=0.05, **flickr
        )
    )
    Corpus.create(path, settings).close()
    return path


def _harvest_args(server: FlickrTestServer, corpus: Path, *extra: str) -> list[str]:
    return [
        "harvest", "flickr", "--query", "cat", "--min-upload", MIN_UPLOAD, "--max-upload", MAX_UPLOAD,
        "--api-url", server.api_url, "--corpus", str(corpus), "--quiet", *extra,
    ]  # fmt: skip


def _env(server: FlickrTestServer) -> dict[str, str]:
    return {"FLICKR_API_KEY": server.config.api_key}


def _logged_pages(corpus: Path) -> set[tuple[str, str, int]]:
    try:
        conn = sqlite3.connect(f"file:{corpus / 'catalog.sqlite'}?mode=ro", uri=True, timeout=2)
        try:
            return {
                (r[0], r[1], r[2])
                for r in conn.execute(
                    "SELECT window_start, window_end, page FROM harvest_log WHERE source='flickr'"
                )
            }
        finally:
            conn.close()
    except sqlite3.Error:
        return set()


def _photo_rows(corpus: Path) -> list[tuple]:
    conn = sqlite3.connect(corpus / "catalog.sqlite")
    try:
        return conn.execute(
            "SELECT p.source_id, p.title, p.caption, p.tags, p.owner, p.lat, p.lon, p.license, p.uploaded_at,"
            " (SELECT group_concat(label) FROM photo_labels l WHERE l.photo_id = p.id),"
            " (SELECT COUNT(*) FROM image_urls u WHERE u.photo_id = p.id)"
            " FROM photos p ORDER BY p.source_id"
        ).fetchall()
    finally:
        conn.close()


def test_sigkill_five_times_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    seed = int(os.environ.get("PHOTOCORPUS_CHAOS_SEED", random.randrange(1 << 30)))
    print(f"chaos seed {seed}")
    rng = random.Random(seed)
    photos = make_population(3_000, n_other=300, years=5, seed=21)
    with FlickrTestServer(photos, ServerConfig(latency_s=0.01)) as server:
        reference = _corpus(tmp_path / "reference")
        run_cli(*_harvest_args(server, reference), env=_env(server))
        total_pages = len(_logged_pages(reference))

        chaos = _corpus(tmp_path / "chaos")
        kills = 0
        for kill_at in sorted(rng.sample(range(1, total_pages - 1), 5)):
            logged_before = _logged_pages(chaos)
            mark = len(server.state.requests)
            proc = subprocess.Popen(
                [sys.executable, "-m", "photocorpus", *_harvest_args(server, chaos)],
                env={**os.environ, **_env(server)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and len(_logged_pages(chaos)) < kill_at:
                time.sleep(0.005)
            if proc.poll() is None:
                time.sleep(rng.uniform(0, 0.02))
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait()
            _assert_no_logged_page_refetched(server, mark, logged_before)
        assert kills == 5, f"seed {seed}"
        logged_before = _logged_pages(chaos)
        mark = len(server.state.requests)
        run_cli(*_harvest_args(server, chaos), env=_env(server))
        _assert_no_logged_page_refetched(server, mark, logged_before)

    assert _photo_rows(chaos) == _photo_rows(reference), f"seed {seed}"
    truth = sorted(p.id for p in photos if "cat" in p.words)
    assert [r[0] for r in _photo_rows(chaos)] == truth
    with Corpus.open(chaos) as corpus:
        assert corpus.verify().integrity == "ok"
        dupes = corpus.conn.execute(
            "SELECT COUNT(*) - COUNT(DISTINCT source || ':' || source_id) FROM photos"
        ).fetchone()[0]
        assert dupes == 0


def _assert_no_logged_page_refetched(
    server: FlickrTestServer, mark: int, logged: set[tuple[str, str, int]]
) -> None:
    with server.state.lock:
        later = server.state.requests[mark:]
    for req in later:
        p = req["params"]
        key = (p.get("min_upload_date"), p.get("max_upload_date"), int(p.get("page", 1)))
        assert key not in logged, f"page {key} was fetched again after it was logged complete"


def test_api_key_never_reaches_output_logs_catalog_or_files(tmp_path: Path) -> None:
    photos = make_population(400, years=1, seed=4, start=datetime(2016, 1, 1, tzinfo=UTC))
    config = ServerConfig(
        api_key="SECRET-key-5f3a9c0d1e2b", fault_rate=0.3, slow_s=0.5, retry_after="0", seed=9
    )
    with FlickrTestServer(photos, config) as server:
        corpus = _corpus(tmp_path / "c", per_page=20, read_timeout_s=0.2)
        outputs = []
        ok = run_cli("--verbose", *_harvest_args(server, corpus), env=_env(server))
        outputs += [ok.stdout, ok.stderr]
        assert "retrying flickr.photos.search" in ok.stderr  # retries are visible at --verbose
        # A run that gives up after too many failures must not show the key either.
        (corpus / "corpus.toml").write_text(
            (corpus / "corpus.toml").read_text().replace("max_retries = 8", "max_retries = 0")
        )
        server.config.fault_rate = 1.0
        failed = run_cli(
            "--verbose", *_harvest_args(server, corpus, "--query", "night"), env=_env(server), check=False
        )
        outputs += [failed.stdout, failed.stderr]
        assert failed.returncode == 2 and "kept failing" in failed.stderr
        # A refused key: the message says what to do, and shows neither key.
        server.config.fault_rate = 0.0
        wrong = "WRONG-key-77aa88bb99cc"
        bad = run_cli(
            *_harvest_args(server, corpus, "--query", "night"), env={"FLICKR_API_KEY": wrong}, check=False
        )
        outputs += [bad.stdout, bad.stderr]
        assert bad.returncode == 2 and "FLICKR_API_KEY" in bad.stderr
        status = run_cli("status", "--json", "--corpus", str(corpus))
        outputs += [status.stdout]
    assert len(photos) == Corpus.open(corpus).count_photos()
    for secret in (config.api_key, wrong):
        for text in outputs:
            assert secret not in text
        for path in corpus.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        conn = sqlite3.connect(corpus / "catalog.sqlite")
        dump = "\n".join(conn.iterdump())
        conn.close()
        assert secret not in dump


def test_demo_flickr_harvests_three_cities(tmp_path: Path) -> None:
    photos = []
    for i, city in enumerate(("london", "newyork", "sydney")):
        photos += make_population(
            150, words=(city,), years=2, seed=30 + i, bursty=False, id_offset=50_000_000 + i * 1000
        )
    for p in photos:  # the demo asks for Creative Commons photos only
        p.license = "4"
    with FlickrTestServer(photos) as server:
        env = {**_env(server), "PHOTOCORPUS_FLICKR_API_URL": server.api_url}
        run_cli("demo", str(tmp_path / "demo"), "--flickr", "--quiet", env=env)
        assert {r["params"]["license"] for r in server.ok_requests()} == {
            "1,2,3,4,5,6,9,10,11,12,13,14,15,16"
        }
    with Corpus.open(tmp_path / "demo") as corpus:
        labels = corpus.status_summary()["labels"]
        assert labels["london"] == labels["newyork"] == labels["sydney"] == 100
        assert corpus.status_summary()["sources"]["flickr"] == 300
    no_key = run_cli(
        "demo", str(tmp_path / "demo2"), "--flickr", "--quiet", env={"FLICKR_API_KEY": ""}, check=False
    )
    assert no_key.returncode == 2 and "FLICKR_API_KEY" in no_key.stderr


def test_two_processes_on_one_key_stay_under_its_budget_together(tmp_path: Path) -> None:
    """A harvest beside another harvest on one key: the seed's FAQ says a key queried too fast gets
    disabled, and Flickr counts calls per key, so the two share one budget (one ledger on the machine)
    instead of taking a full budget each."""
    rate_per_hour = 36_000  # one call per 0.1 s, so the test takes seconds
    photos = make_population(50, words=("cat",), n_other=50, years=1, seed=5, bursty=False)
    settings = Settings(
        flickr=FlickrSettings(
            calls_per_hour=rate_per_hour, per_page=2, backoff_base_s=0.01, backoff_cap_s=0.05
        )
    )
    state = tmp_path / "state"
    with FlickrTestServer(photos) as server:
        procs = []
        for query in ("cat", "dog"):
            Corpus.create(tmp_path / query, settings).close()
            args = [
                "harvest", "flickr", "--query", query, "--min-upload", MIN_UPLOAD, "--max-upload", MAX_UPLOAD,
                "--api-url", server.api_url, "--corpus", str(tmp_path / query), "--quiet",
            ]  # fmt: skip
            env = {**os.environ, **_env(server), "PHOTOCORPUS_STATE_DIR": str(state)}
            procs.append(subprocess.Popen([sys.executable, "-m", "photocorpus", *args], env=env))
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
        requests = [r for r in server.state.requests if r["params"].get("method") == "flickr.photos.search"]
    times = {q: sorted(r["time"] for r in requests if r["params"].get("text") == q) for q in ("cat", "dog")}
    assert min(len(t) for t in times.values()) >= 25, {q: len(t) for q, t in times.items()}
    both = sorted(times["cat"] + times["dog"])
    overlap = min(times["cat"][-1], times["dog"][-1]) - max(times["cat"][0], times["dog"][0])
    assert overlap > 1.0  # the two ran side by side for a while (each alone needs over 2.4 s)
    # In any one second the two together sent at most the key's rate (10), plus the first call's burst
    # of one, plus one call per process that was sent a little after its slot: never one budget each.
    busiest = max(sum(1 for t in both if start <= t < start + 1.0) for start in both)
    assert busiest <= 1 + rate_per_hour / 3600 + 2, busiest
    # ... because both reserved their calls in one ledger row (the key's hash), which counted them all
    with sqlite3.connect(state / "ratelimit.sqlite") as conn:
        counted = conn.execute("SELECT calls FROM ledger").fetchall()
    assert counted == [(len(server.state.requests),)]
