"""kill -9 during a hashtag harvest, then resume: the same photos as one uninterrupted run, no duplicates.

The harvest runs in a subprocess (``python -m tests.test_instagram_kill CORPUS SESSION``) through the
production path: ``open_instaloader`` on a session file, ``InstaloaderPosts`` (instaloader's Hashtag
and resumable NodeIterator) and ``harvest_instagram``. Only the HTTP transport is replaced, by
:class:`FakeInstagram`, which answers with a little latency so that kills land anywhere.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from photocorpus.config import InstagramSettings, Settings
from photocorpus.corpus import Corpus
from tests.conftest import ROOT
from tests.helpers import catalog_dump
from tests.test_instagram_support import (
    FakeInstagram,
    expected_photo_ids,
    expected_video_ids,
    feed,
    write_session_file,
)

LATENCY_S = 0.015


def kill_test_feed() -> dict[str, list[dict]]:
    london = feed(1_100_000_000_000_000_000, 150)
    newyork = feed(1_200_000_000_000_000_000, 90, seed=11)
    return {"london": london, "newyork": [*newyork[:45], *london[60:75], *newyork[45:]]}  # 15 shared posts


def _harvest_main(corpus_dir: str, session_file: str) -> None:
    """The subprocess: harvest both hashtags into the corpus, as `photocorpus harvest instagram` does."""
    from photocorpus.sources.instagram import (
        InstagramQuery,
        InstaloaderPosts,
        harvest_instagram,
        open_instaloader,
    )
    from tests.test_instagram_support import RecordingRateController

    with FakeInstagram(kill_test_feed(), latency_s=LATENCY_S).installed():
        loader = open_instaloader(
            login="tester",
            session_file=Path(session_file),
            sleep=False,
            rate_controller=RecordingRateController,
        )
        with Corpus.open(corpus_dir) as corpus:
            queries = [InstagramQuery.hashtag("london"), InstagramQuery.hashtag("newyork")]
            report = harvest_instagram(corpus, queries, InstaloaderPosts(loader))
    print(json.dumps({"statuses": [q.status for q in report.queries], "posts": report.posts}))


def _committed_photos(corpus_dir: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{corpus_dir / 'catalog.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _run(corpus_dir: Path, session: Path, kill_after: int | None, rng: random.Random) -> int | None:
    """Run the harvest; with ``kill_after``, SIGKILL its process group once that many photos are in.
    Returns ``None`` when killed, else the number of posts the run read."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.test_instagram_kill", str(corpus_dir), str(session)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while kill_after is not None and proc.poll() is None and time.monotonic() < deadline:
        if _committed_photos(corpus_dir) >= kill_after:
            time.sleep(rng.uniform(0, 0.05))  # land anywhere: mid-page, mid-lookup, mid-commit
            break
        time.sleep(0.01)
    if kill_after is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert set(result["statuses"]) <= {"complete", "already_complete"}
    return int(result["posts"])


def _extra_tables(corpus_dir: Path) -> dict[str, list[tuple]]:
    queries = {
        "urls": "SELECT photo_id, size_key, url, width, height FROM image_urls ORDER BY 1, 2",
        "skipped": "SELECT stage, source, source_id, reason FROM skipped_media ORDER BY 1, 2, 3",
        "counters": "SELECT stage, name, value FROM counters ORDER BY 1, 2",
        "resume": "SELECT query, json_extract(state, '$.complete'), json_extract(state, '$.posts_in_pass') "
        "FROM harvest_log WHERE page = 0 ORDER BY query",
    }
    conn = sqlite3.connect(corpus_dir / "catalog.sqlite")
    try:
        return {name: conn.execute(sql).fetchall() for name, sql in queries.items()}
    finally:
        conn.close()


def test_sigkill_mid_harvest_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    seed = int(os.environ.get("PHOTOCORPUS_CHAOS_SEED", random.randrange(1 << 30)))
    print(f"chaos seed {seed}")
    rng = random.Random(seed)
    session = write_session_file(tmp_path / "session-tester")
    nodes = [n for tag in kill_test_feed().values() for n in tag]
    expected = expected_photo_ids(nodes)

    reference = tmp_path / "reference"
    Corpus.create(reference, Settings(instagram=InstagramSettings(commit_every_posts=12))).close()
    all_posts = _run(reference, session, None, rng)
    assert all_posts == sum(len({n["id"] for n in tag}) for tag in kill_test_feed().values())

    chaos = tmp_path / "chaos"
    Corpus.create(chaos, Settings(instagram=InstagramSettings(commit_every_posts=5))).close()
    kills = 0
    # Kill points stop at three quarters, so that no run can finish before its kill lands.
    for kill_after in sorted(rng.sample(range(1, len(expected) * 3 // 4), 3)):
        kills += _run(chaos, session, kill_after, rng) is None
    assert kills >= 2, f"the harvest finished before it could be killed (seed {seed})"
    assert _committed_photos(chaos) < len(expected)
    last_run_posts = _run(chaos, session, None, rng)
    assert last_run_posts is not None and last_run_posts < all_posts  # it resumed, not restarted

    assert catalog_dump(chaos) == catalog_dump(reference), f"seed {seed}"
    assert _extra_tables(chaos) == _extra_tables(reference), f"seed {seed}"
    with Corpus.open(chaos) as corpus:
        ids = [r[0] for r in corpus.conn.execute("SELECT source_id FROM photos")]
        assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))  # the same set, no duplicates
        counters = corpus.status_summary()["counters"]
        assert counters["harvest"]["skipped_videos"] == len(expected_video_ids(nodes))
        assert corpus.verify().integrity == "ok"


if __name__ == "__main__":
    _harvest_main(sys.argv[1], sys.argv[2])
