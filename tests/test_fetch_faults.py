"""About 3,000 real photos from a hostile server: every servable photo ends fetched, every other one
has the right reason, and no worker crashes."""

from __future__ import annotations

import io
import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

from PIL import Image

from photocorpus import reasons
from photocorpus.config import FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.fetch.stage import fetch_photos
from photocorpus.records import ImageURL, PhotoRecord
from tests.fixtures.image_server import ImageServer, Route, bomb_png, cmyk_jpeg, exif_rotated_jpeg

# fault name -> (route factory from the photo's bytes, expected reason or None when servable)
TRANSIENT = {
    "429_retry_after": lambda b: Route(b, fault="status", fault_status=429, retry_after="0", fail_times=1),
    "503_twice": lambda b: Route(b, fault="status", fault_status=503, fail_times=2),
    "500_once": lambda b: Route(b, fault="status", fault_status=500, fail_times=1),
    "reset_once": lambda b: Route(b, fault="reset", fail_times=1),
    # aiohttp itself retries a GET once when a pooled connection is reset, so only a second reset in
    # a row shows that our own retry treats connection_error as transient
    "reset_twice": lambda b: Route(b, fault="reset", fail_times=2),
    "truncated_once": lambda b: Route(b, fault="truncate", fail_times=1),
    "slow_drip_once": lambda b: Route(b, fault="drip", fail_times=1, drip_bytes=16, drip_interval_s=0.2),
}
PERMANENT = {
    "404": (lambda b: Route(status=404, body=b"missing"), "http_404"),
    "410": (lambda b: Route(status=410), "http_410"),
    "503_always": (lambda b: Route(b, fault="status", fault_status=503, fail_times=-1), "http_503"),
    "reset_always": (lambda b: Route(b, fault="reset", fail_times=-1), reasons.CONNECTION_ERROR),
    "truncated_always": (lambda b: Route(b, fault="truncate", fail_times=-1), reasons.TRUNCATED_BODY),
    "slow_drip_always": (
        lambda b: Route(b, fault="drip", fail_times=-1, drip_bytes=16, drip_interval_s=0.2),
        reasons.TIMEOUT,
    ),
    "html": (
        lambda b: Route(b"<!doctype html><title>Error</title>", content_type="text/html"),
        reasons.NOT_AN_IMAGE,
    ),
    "zero_bytes": (lambda b: Route(b""), reasons.EMPTY_FILE),
    "close_delimited_half": (lambda b: Route(b[: len(b) // 2], content_length=False), reasons.CORRUPT_IMAGE),
    "x_robots": (
        lambda b: Route(b, headers={"X-Robots-Tag": "noimageai"}),
        reasons.DISALLOWED_BY_X_ROBOTS_TAG,
    ),
}


def test_hostile_server_3000_photos(tmp_path: Path, instany_images: Path) -> None:
    rng = random.Random(20240)
    paths = sorted(instany_images.glob("*.jpg"))
    assert len(paths) >= 3000
    faults: list[str | None] = [None] * len(paths)
    slots = rng.sample(range(len(paths)), 12 * len(TRANSIENT) + 6 * len(PERMANENT))
    names = [n for n in TRANSIENT for _ in range(12)] + [n for n in PERMANENT for _ in range(6)]
    for slot, name in zip(slots, names, strict=True):
        faults[slot] = name

    corpus = Corpus.create(tmp_path / "c")
    expected: dict[str, str | None] = {}
    special: dict[str, str] = {}
    with ImageServer() as server:
        records = []
        for i, (path, fault) in enumerate(zip(paths, faults, strict=True)):
            body = path.read_bytes()
            if fault is None:
                route, reason = Route(body), None
            elif fault in TRANSIENT:
                route, reason = TRANSIENT[fault](body), None
            else:
                factory, reason = PERMANENT[fault]
                route = factory(body)
            records.append(
                PhotoRecord("t", str(i), ["nyc"], urls=[ImageURL("url_l", server.add(f"/{i}.jpg", route))])
            )
            expected[str(i)] = reason
        # real photos in the formats hosts actually send
        for name, data in (
            ("cmyk", cmyk_jpeg(paths[0])),
            ("rotated", exif_rotated_jpeg(paths[1], orientation=6, size=(800, 600))),
            ("rotated_8", exif_rotated_jpeg(paths[2], orientation=8, size=(640, 480))),
        ):
            records.append(
                PhotoRecord(
                    "t", name, ["nyc"], urls=[ImageURL("url_l", server.add(f"/{name}.jpg", Route(data)))]
                )
            )
            expected[name] = None
            special[name] = name
        records.append(
            PhotoRecord(
                "t",
                "bomb",
                ["nyc"],
                urls=[
                    ImageURL("url_l", server.add("/bomb.png", Route(bomb_png(), content_type="image/png")))
                ],
            )
        )
        expected["bomb"] = reasons.DECOMPRESSION_BOMB
        corpus.add_photos(records)

        settings = FetchSettings(
            allow_private_urls=True,
            host_rate_per_s=0,
            min_side_px=0,
            max_retries=3,
            backoff_base_s=0.05,
            backoff_cap_s=0.5,
            total_timeout_s=3.0,
            per_host_connections=64,
            workers=2,
        )
        report = fetch_photos(corpus, settings, seed=1)
        # a 404 or 410 is final: asked once, never retried
        for sid, reason in expected.items():
            if reason in ("http_404", "http_410"):
                assert server.requests_to(f"/{sid}.jpg") == 1, (sid, reason)

    ids = corpus.photo_ids("t", list(expected))
    rows = {
        r["photo_id"]: (r["status"], r["reason"], r["detail"])
        for r in corpus.conn.execute(
            "SELECT photo_id, status, reason, detail FROM stages WHERE stage = 'fetch'"
        )
    }
    wrong = {
        sid: rows.get(ids[sid])
        for sid, reason in expected.items()
        if rows.get(ids[sid], (None, None))[:2] != (("done", None) if reason is None else ("failed", reason))
    }
    assert wrong == {}, list(wrong.items())[:10]
    assert report.fetched == sum(1 for r in expected.values() if r is None)
    assert not any(
        r[1] == reasons.INTERNAL_ERROR or "died" in (r[2] or "") for r in rows.values()
    )  # no crash
    assert report.retries >= 12 * len(TRANSIENT)
    check = corpus.verify()
    assert check.ok, check
    rotated = corpus.photo(ids["rotated"])["file"]
    assert (rotated["width"], rotated["height"]) == (600, 800)
    rotated_8 = corpus.photo(ids["rotated_8"])["file"]
    assert (rotated_8["width"], rotated_8["height"]) == (480, 640)
    cmyk = corpus.photo(ids["cmyk"])["file"]
    assert Image.open(io.BytesIO(corpus.abs_path(cmyk["path"]).read_bytes())).mode == "RGB"


def _worker_pids() -> list[int]:
    """Our pool's worker processes: children of this process started by multiprocessing's spawn."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_run_costs_no_photo(tmp_path: Path, instany_images: Path) -> None:
    paths = sorted(instany_images.glob("*.jpg"))[:600]
    corpus = Corpus.create(tmp_path / "c")
    killed: list[int] = []
    with ImageServer() as server:
        corpus.add_photos(
            [
                PhotoRecord(
                    "t",
                    p.stem,
                    ["x"],
                    urls=[ImageURL("url_l", server.add(f"/{p.name}", Route(p.read_bytes())))],
                )
                for p in paths
            ]
        )

        def assassin() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                watcher = sqlite3.connect(
                    f"file:{corpus.root / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5
                )
                done = watcher.execute("SELECT COUNT(*) FROM stages").fetchone()[0]
                watcher.close()
                pids = _worker_pids()
                if done >= 100 and pids:
                    os.kill(pids[0], signal.SIGKILL)  # as the OOM killer or a decoder segfault would
                    killed.append(pids[0])
                time.sleep(0.02)

        thread = threading.Thread(target=assassin)
        thread.start()
        settings = FetchSettings(allow_private_urls=True, host_rate_per_s=200, min_side_px=0, workers=2)
        report = fetch_photos(corpus, settings)
        thread.join()
    assert killed, "the run ended before a worker could be killed"
    assert (report.fetched, report.failed) == (600, 0)
    assert corpus.verify().ok
