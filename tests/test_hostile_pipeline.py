"""Hostile records through the whole pipeline, as a user runs it with --verbose.

A Flickr-compatible server returns photos whose ids and owners try path traversal, whose titles,
captions (one of 1 MB) and tags carry XSS payloads, unicode and emoji. harvest -> fetch -> curate ->
featurize -> explore -> search --html -> export, then:

* every file stays inside the corpus, under names the layout made safe; nothing is written outside;
* the text is stored verbatim (emoji and all) and the 1 MB caption neither crashes nor truncates a row;
* the search gallery, opened in headless Chromium, runs none of the payloads;
* the API key appears in no output: stdout/stderr at --verbose (also of a run that fails with a
  connection error, whose exception text names the request), logs, the catalog (a full SQL dump),
  reports, exports or any other file of the corpus.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from photocorpus.config import FetchSettings, FlickrSettings, Settings
from photocorpus.corpus import Corpus
from photocorpus.corpus_paths import resolve_inside
from tests.conftest import run_cli
from tests.fixtures.flickr_server import FlickrTestServer, ServerConfig, make_population

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

KEY = "SECRET-flickr-key-9c1e77ab40d2"
XSS_TITLE = "<script>window.__pwned=1;alert(1)</script> \"'><img src=x onerror=alert(2)>"
XSS_CAPTION = '<img src=x onerror="window.__pwned=3;alert(3)"> <svg onload=alert(4)> café 😀 日本語'
XSS_TAG = "</script><script>alert(5)</script>"
HOSTILE_IDS = [
    "../../../../../../tmp/pc-escape",
    "..\\..\\..\\windows\\system32",
    "<script>alert(6)</script>",
    "con",
    "😀💥 emoji id",
    "/etc/passwd",
]
BIG_CAPTION = ("a very long caption 😀 " * 50_000)[:1_000_000]  # 1 MB of text (more bytes in UTF-8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hostile_records_stay_inert_and_the_key_never_leaks(
    instany_images: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    photos = make_population(40, years=1, seed=5, start=datetime(2016, 1, 1, tzinfo=UTC), bursty=False)
    for i, (photo, path) in enumerate(zip(photos, sorted(instany_images.glob("*.jpg"))[2500:], strict=False)):
        photo.image = path.read_bytes()
        photo.tags = (*photo.tags, "café", "😀")
        if i < len(HOSTILE_IDS):
            photo.id = HOSTILE_IDS[i]
            photo.owner = "../../owner"
            photo.title = XSS_TITLE
            photo.description = XSS_CAPTION
            photo.tags = (*photo.tags, XSS_TAG)
    photos[-1].description = BIG_CAPTION
    env = {
        "PHOTOCORPUS_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "featurize-onnx-cache"),
        "FLICKR_API_KEY": KEY,
    }
    corpus = tmp_path / "corpus"
    Corpus.create(
        corpus,
        Settings(
            flickr=FlickrSettings(calls_per_hour=3.6e9, per_page=20, backoff_base_s=0.01, backoff_cap_s=0.05),
            fetch=FetchSettings(host_rate_per_s=0, min_side_px=0),
        ),
    ).close()
    outside_before = sorted(p.name for p in tmp_path.iterdir())
    c = ["--corpus", str(corpus)]
    outputs: list[str] = []

    def cli(*args: str, check: bool = True) -> str:
        proc = run_cli("--verbose", *args, env=env, check=check)
        outputs.extend([proc.stdout, proc.stderr])
        return proc.stdout

    with FlickrTestServer(photos, ServerConfig(api_key=KEY)) as server:
        harvest = ["harvest", "flickr", "--min-upload", "2015-12-01", "--max-upload", "2017-06-01",
                   "--quiet", *c]  # fmt: skip
        cli(*harvest, "--query", "cat", "--api-url", server.api_url)
        cli("fetch", "--allow-private-urls", "--workers", "1", "--quiet", *c)
    # the same harvest against a dead port: the error (and its --verbose trace) must not show the key
    dead = run_cli(
        "--verbose", *harvest, "--query", "dog", "--api-url", f"http://127.0.0.1:{_free_port()}/services/rest/",
        env=env, check=False,
    )  # fmt: skip
    outputs.extend([dead.stdout, dead.stderr])
    assert dead.returncode != 0 and "Traceback" not in dead.stderr
    cli("curate", "--workers", "1", "--quiet", *c)
    cli("featurize", "--workers", "1", "--quiet", *c)
    cli("explore", "--method", "pca", "--quiet", *c)
    result = json.loads(
        cli("search", "script alert cat", "--method", "bridge", "--html", "--json", "--k", "40", *c)
    )
    for fmt in ("imagefolder", "parquet", "webdataset", "attribution"):
        cli("export", fmt, str(tmp_path / "exports" / fmt), "--quiet", *c, check=False)
    cli("status", "--json", *c)
    cli("verify", *c)

    # --- paths: everything inside the corpus (or the export folders we named), nothing else created
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*outside_before, "exports"})
    assert not Path("/tmp/pc-escape").exists()
    conn = sqlite3.connect(corpus / "catalog.sqlite")
    try:
        stored = dict(
            conn.execute("SELECT source_id, caption FROM photos WHERE source = 'flickr'").fetchall()
        )
        files = [r[0] for r in conn.execute("SELECT path FROM files")]
        done = conn.execute(
            "SELECT COUNT(*) FROM stages WHERE stage = 'fetch' AND status = 'done'"
        ).fetchone()[0]
        tags = "\n".join(r[0] or "" for r in conn.execute("SELECT tags FROM photos"))
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert set(HOSTILE_IDS) <= set(stored)  # ids kept verbatim in the catalog ...
    assert done == len(photos)
    for rel in files:  # ... but every stored file name is a safe one, inside the corpus
        resolve_inside(corpus, rel)
        assert rel.startswith("images/") and ".." not in rel and "<" not in rel
    for path in tmp_path.rglob("*"):
        assert path.resolve().is_relative_to(tmp_path.resolve()), path
    # --- text: verbatim, unicode intact, the 1 MB caption whole
    assert "😀" in stored["😀💥 emoji id"] and "日本語" in stored["😀💥 emoji id"]
    assert len(stored[photos[-1].id]) >= 999_000
    assert "😀" in tags and XSS_TAG in tags

    # --- secrets: no output, file or catalog row holds the key
    for text in outputs:
        assert KEY not in text
    assert KEY not in dump
    for path in [*corpus.rglob("*"), *(tmp_path / "exports").rglob("*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path

    # --- the search gallery in a real browser: the payloads are text, never code
    gallery = Path(result["html"]) if isinstance(result, dict) and result.get("html") else None
    if gallery is None:
        gallery = next((corpus / "reports" / "search").glob("*.html"))
    html = gallery.read_text(encoding="utf-8")
    assert "&lt;script&gt;" in html or "&lt;img src=x onerror" in html, "the hostile photos should be hits"
    _assert_inert_in_chromium(gallery)


def _assert_inert_in_chromium(page: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    from tests.test_report_browser import start_chromium, wait_for

    driver = start_chromium()
    try:
        driver.get(page.as_uri())
        wait_for(lambda: driver.execute_script("return document.readyState") == "complete", what="the page")
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018 - reading it is the check
        assert driver.execute_script("return window.__pwned === undefined")
        text = driver.execute_script("return document.body.innerText")
        assert "<script>" in text or "onerror" in text  # shown to the reader as text
        assert driver.execute_script("return document.querySelectorAll('script, svg, [onerror]').length") == 0
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], severe
    finally:
        driver.quit()
