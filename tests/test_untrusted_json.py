"""JSON from outside (sidecars, URL lists, Flickr answers) nested 100,000 deep, too large or broken.

Before: a deep ``.json`` sidecar killed ``import`` with a RecursionError, on every re-run; a deep
``.jsonl`` line did the same to ``harvest urls``; a deep or broken-gzip Flickr answer ended ``harvest``
and ``enrich`` with a RecursionError or an ``httpx.DecodingError`` traceback. Now a bad sidecar is a
note on its photo, a bad URL list is refused with a message, and a bad answer is retried, then refused.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import instaloader
import pytest
from instaloader import Post, save_structure_to_file

from photocorpus.config import FlickrSettings, Settings
from photocorpus.corpus import Corpus
from photocorpus.errors import PhotocorpusError, UntrustedJSONError
from photocorpus.flickr_api import MAX_ANSWER_BYTES, FlickrClient, FlickrUnavailableError
from photocorpus.sources.flickr import FlickrHarvester, HarvestQuery, SearchFilters
from photocorpus.untrusted_json import (
    INVALID_JSON,
    JSON_TOO_DEEP,
    JSON_TOO_LARGE,
    MAX_DEPTH,
    loads_untrusted,
    nesting_exceeds,
)
from tests.conftest import run_cli
from tests.fixtures.flickr_server import FlickrTestServer, ServerConfig, add_enrichment_truth, make_population
from tests.helpers import catalog_dump
from tests.test_instagram_support import post_node

pytestmark = pytest.mark.reliability

BOMB = "[" * 100_000 + "]" * 100_000  # a valid JSON document json.loads cannot parse


def _refused(data: str | bytes, **kw) -> str:
    with pytest.raises(UntrustedJSONError) as info:
        loads_untrusted(data, **{"max_bytes": 10**8, **kw})
    assert isinstance(info.value, PhotocorpusError) and isinstance(info.value, ValueError)
    return info.value.reason


# ---------------------------------------------------------------------------------------------- the scan
def test_deep_arrays_and_objects_are_refused_quickly() -> None:
    start = time.monotonic()
    assert _refused(BOMB) == JSON_TOO_DEEP
    assert _refused('{"a":' * 100_000 + "1" + "}" * 100_000) == JSON_TOO_DEEP
    assert _refused(BOMB.encode()) == JSON_TOO_DEEP
    assert _refused("[" * 100_000) == JSON_TOO_DEEP  # unclosed: refused for depth before the parser sees it
    assert time.monotonic() - start < 2


def test_exactly_the_limit_parses_one_more_is_refused() -> None:
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_untrusted(at_limit, max_bytes=10**6) == json.loads(at_limit)
    assert _refused("[" + at_limit + "]") == JSON_TOO_DEEP
    mixed = '{"a": [{"b": [1]}]}'  # depth 4
    assert loads_untrusted(mixed, max_bytes=100, max_depth=4) == {"a": [{"b": [1]}]}
    assert _refused(mixed, max_depth=3) == JSON_TOO_DEEP


def test_brackets_inside_strings_do_not_count() -> None:
    # Escaped quotes and escaped backslashes: the string ends where JSON says, not at the first quote.
    text = json.dumps(['[[[[ "{{{{ \\', ']]]] \\" [[[[', {"k[[": "\\"}])
    assert '\\"' in text and "\\\\" in text
    assert not nesting_exceeds(text, 2)
    assert loads_untrusted(text, max_bytes=10**4, max_depth=2) == json.loads(text)
    assert nesting_exceeds(text, 1)
    # An unterminated string full of escaped quotes, then brackets: linear time, then invalid JSON.
    hostile = '["' + '\\"' * 2_000_000 + "[" * 1000
    start = time.monotonic()
    assert _refused(hostile) == INVALID_JSON
    assert time.monotonic() - start < 2


def test_size_cap_and_invalid_json() -> None:
    assert loads_untrusted(b'"' + b"x" * 98 + b'"', max_bytes=100) == "x" * 98
    assert _refused(b'"' + b"x" * 99 + b'"', max_bytes=100) == JSON_TOO_LARGE
    assert _refused("{not json") == INVALID_JSON
    assert _refused(b'"\xff\xfe\x00"') == INVALID_JSON
    assert loads_untrusted('{"a": [1]}'.encode("utf-16"), max_bytes=100) == {"a": [1]}


# ---------------------------------------------------------------------------------------------- import
def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr, proc.stderr


def _import_twice(src: Path, corpus_dir: Path) -> None:
    """Import ``src``, then again: both finish, and the second changes nothing."""
    run_cli("init", str(corpus_dir))
    first = run_cli("import", str(src), "-C", str(corpus_dir), "--workers", "1", "-q")
    _no_traceback(first)
    dump = catalog_dump(corpus_dir)
    again = run_cli("import", str(src), "-C", str(corpus_dir), "--workers", "1", "-q")
    _no_traceback(again)
    assert "0 imported" in again.stdout
    assert catalog_dump(corpus_dir) == dump


def _photos(corpus_dir: Path) -> dict[str, dict]:
    with Corpus.open(corpus_dir) as corpus:
        rows = corpus.conn.execute("SELECT id, source, source_id FROM photos").fetchall()
        return {f"{r[1]}:{r[2]}": corpus.photo(r[0]) for r in rows}


def test_plain_folder_with_a_100000_deep_sidecar(instany_images: Path, tmp_path: Path) -> None:
    src = tmp_path / "mine" / "beach"
    src.mkdir(parents=True)
    photos = sorted(instany_images.glob("*.jpg"))[:3]
    for p in photos:
        shutil.copy(p, src / p.name)
    (src / f"{photos[0].stem}.json").write_text(json.dumps({"title": "fine"}), "utf-8")
    (src / f"{photos[1].stem}.json").write_text(BOMB, "utf-8")
    _import_twice(src.parent, tmp_path / "corpus")
    rows = _photos(tmp_path / "corpus")
    assert len(rows) == 3
    assert all(r["stages"]["fetch"]["status"] == "done" for r in rows.values())
    assert rows[f"folder:beach/{photos[0].stem}"]["title"] == "fine"
    bad = rows[f"folder:beach/{photos[1].stem}"]
    assert bad["title"] is None
    assert bad["extra"]["sidecar_warnings"] == [f"json sidecar: nested deeper than {MAX_DEPTH} levels"]


def test_instaloader_folder_with_a_100000_deep_post_json(instany_images: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dl" / "#paris"
    folder.mkdir(parents=True)
    photos = sorted(instany_images.glob("*.jpg"))[400:402]
    loader = instaloader.Instaloader(sleep=False, quiet=True)
    node = post_node(photos[0].stem, taken_at=1_480_000_000, caption="with json #paris")
    save_structure_to_file(Post(loader.context, node), str(folder / "2016-11-24_15-06-40_UTC.json.xz"))
    shutil.copy(photos[0], folder / "2016-11-24_15-06-40_UTC.jpg")
    shutil.copy(photos[1], folder / "2016-11-25_10-00-00_UTC.jpg")
    (folder / "2016-11-25_10-00-00_UTC.json").write_text(BOMB, "utf-8")  # --no-compress-json
    _import_twice(folder.parent, tmp_path / "corpus")
    rows = _photos(tmp_path / "corpus")
    assert set(rows) == {f"instagram:{photos[0].stem}", "folder:#paris/2016-11-25_10-00-00_UTC"}
    assert rows[f"instagram:{photos[0].stem}"]["caption"] == "with json #paris"
    bad = rows["folder:#paris/2016-11-25_10-00-00_UTC"]
    assert bad["stages"]["fetch"]["status"] == "done"
    assert bad["extra"]["sidecar_warnings"] == [
        f"post json 2016-11-25_10-00-00_UTC.json: nested deeper than {MAX_DEPTH} levels"
    ]


def test_instalooter_folder_with_a_100000_deep_dump(instany_images: Path, tmp_path: Path) -> None:
    folder = tmp_path / "instalooter" / "london"
    folder.mkdir(parents=True)
    photos = sorted(instany_images.glob("*.jpg"))[500:502]
    good = post_node(photos[0].stem, taken_at=1_480_000_000, caption="Big Ben #London", username="bob")
    (folder / f"{photos[0].stem}.json").write_text(json.dumps(good), "utf-8")
    (folder / f"{photos[1].stem}.json").write_text(BOMB, "utf-8")
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    _import_twice(folder.parent, tmp_path / "corpus")
    rows = _photos(tmp_path / "corpus")
    assert set(rows) == {f"instagram:{p.stem}" for p in photos}
    assert rows[f"instagram:{photos[0].stem}"]["caption"] == "Big Ben #London"
    bad = rows[f"instagram:{photos[1].stem}"]
    assert bad["stages"]["fetch"]["status"] == "done" and bad["caption"] is None
    assert bad["extra"]["sidecar_warnings"] == [
        f"json dump {photos[1].stem}.json: nested deeper than {MAX_DEPTH} levels"
    ]


# ---------------------------------------------------------------------------------------------- harvest urls
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_harvest_urls_refuses_a_deep_list_with_a_message(tmp_path: Path, fmt: str) -> None:
    # As for a line that is not JSON at all: the list is refused with the file and the line named.
    good = [json.dumps({"url": f"https://example.com/{i}.jpg"}) for i in range(4)]
    path = tmp_path / f"list.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join([*good[:2], BOMB, *good[2:]]) + "\n", "utf-8")
        expected = f"cannot read list.jsonl as jsonl: line 3: nested deeper than {MAX_DEPTH} levels"
    else:
        path.write_text(f"[{good[0]}, {BOMB}]", "utf-8")
        expected = f"cannot read list.json as json: nested deeper than {MAX_DEPTH} levels"
    run_cli("init", str(tmp_path / "c"))
    for _ in range(2):  # and again: the same message, not a crash on the re-run
        proc = run_cli("harvest", "urls", str(path), "-C", str(tmp_path / "c"), "-q", check=False)
        _no_traceback(proc)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------- Flickr
MIN_UPLOAD = "2014-12-01"
MAX_UPLOAD = "2020-06-01"
T_END = int(datetime(2020, 6, 1, tzinfo=UTC).timestamp())


def _flickr_corpus(path: Path) -> Path:
    settings = Settings(
        flickr=FlickrSettings(
            calls_per_hour=3.6e9, per_page=50, backoff_base_s=0.01, backoff_cap_s=0.05, max_retries=2
        )
    )
    Corpus.create(path, settings).close()
    return path


@pytest.mark.parametrize(
    ("fault", "cause"), [("deep_json", "json_too_deep"), ("bad_gzip", "bad_content_encoding")]
)
def test_flickr_harvest_and_enrich_refuse_a_hostile_answer_with_a_message(
    tmp_path: Path, fault: str, cause: str
) -> None:
    photos = make_population(20, years=1, seed=4, start=datetime(2016, 1, 1, tzinfo=UTC), bursty=False)
    add_enrichment_truth(photos, seed=4)
    corpus_dir = _flickr_corpus(tmp_path / "c")
    with FlickrTestServer(photos, ServerConfig(fault_rate=1.0, faults=(fault,))) as server:
        env = {"FLICKR_API_KEY": server.config.api_key, "PHOTOCORPUS_FLICKR_API_URL": server.api_url}
        harvest = [
            "harvest", "flickr", "--query", "cat", "--min-upload", MIN_UPLOAD, "--max-upload", MAX_UPLOAD,
            "--api-url", server.api_url, "--corpus", str(corpus_dir), "--quiet",
        ]  # fmt: skip
        proc = run_cli(*harvest, env=env, check=False)
        _no_traceback(proc)
        assert proc.returncode == 2 and f"kept failing after 2 retries (last: {cause})" in proc.stderr
        assert len(server.state.requests) == 3  # the call and its two retries, then the refusal
        server.config.fault_rate = 0.0
        run_cli(*harvest, env=env)  # the server mended: the re-run harvests everything
        server.config.fault_rate = 1.0
        proc = run_cli("enrich", "flickr", "-C", str(corpus_dir), "-q", env=env, check=False)
        _no_traceback(proc)
        assert proc.returncode == 2 and f"kept failing after 2 retries (last: {cause})" in proc.stderr
        server.config.fault_rate = 0.0
        run_cli("enrich", "flickr", "-C", str(corpus_dir), "-q", env=env)
    conn = sqlite3.connect(corpus_dir / "catalog.sqlite")
    try:
        assert conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0] == 20
        assert conn.execute("SELECT COUNT(*) FROM enrichment").fetchone()[0] == 20 * 4
    finally:
        conn.close()


def test_transient_hostile_answers_are_retried_and_counted(tmp_path: Path) -> None:
    photos = make_population(600, years=2, seed=9)
    truth = {p.id for p in photos if "cat" in p.words}
    config = ServerConfig(fault_rate=0.2, faults=("deep_json", "bad_gzip"), seed=3)
    with Corpus.create(tmp_path / "c") as corpus, FlickrTestServer(photos, config) as server:
        client = FlickrClient(
            server.config.api_key, api_url=server.api_url, calls_per_hour=3.6e9, backoff_base_s=0.01,
            backoff_cap_s=0.05,
        )  # fmt: skip
        with client:
            start = int(datetime(2014, 12, 1, tzinfo=UTC).timestamp())
            filters = SearchFilters(min_upload=start, max_upload=T_END, per_page=25)
            FlickrHarvester(corpus, client, filters).run([HarvestQuery("cat", "cat")])
        got = {r[0] for r in corpus.conn.execute("SELECT source_id FROM photos WHERE source = 'flickr'")}
        counters = corpus.status_summary()["counters"]["harvest"]
    assert got == truth
    assert counters["retries_json_too_deep"] >= 1 and counters["retries_bad_content_encoding"] >= 1


def test_an_answer_over_the_size_cap_is_refused_without_reading_it_all() -> None:
    sent: list[int] = []

    def stream():  # 1 MiB pieces of a valid JSON string, well past the cap
        yield b'{"stat": "ok", "x": "'
        for _ in range(MAX_ANSWER_BYTES // (1 << 20) + 8):
            sent.append(1)
            yield b"a" * (1 << 20)
        yield b'"}'

    client = FlickrClient(
        "size-cap-key-0c1d2e",
        api_url="https://api.flickr.invalid/services/rest/",
        calls_per_hour=3.6e9,
        max_retries=0,
        transport=httpx.MockTransport(lambda request: httpx.Response(200, content=stream())),
    )
    with client, pytest.raises(FlickrUnavailableError, match=r"last: json_too_large"):
        client.call("flickr.test.echo")
    assert len(sent) <= MAX_ANSWER_BYTES // (1 << 20) + 1  # it stopped reading at the cap
