"""Enrichment (MIRFLICKR-1M s16a kinds) against the Flickr-compatible server, EXIF from files,
and provenance embedded in JPEGs."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocorpus.config import FlickrSettings, Settings
from photocorpus.corpus import Corpus
from photocorpus.enrich.flickr import (
    METHODS,
    EnrichPlan,
    FlickrEnricher,
    api_keys_from,
    parse_kinds,
    pending_calls,
)
from photocorpus.errors import ConfigError
from photocorpus.exif import fields_from_bytes, store_exif
from photocorpus.flickr_api import FlickrClient
from photocorpus.importing import import_folder
from photocorpus.logs import redact
from photocorpus.provenance import NotAJpegError, Provenance, embed_provenance
from photocorpus.sources.flickr import FlickrHarvester, HarvestQuery, SearchFilters
from tests.conftest import run_cli
from tests.fixtures.flickr_server import FlickrTestServer, ServerConfig, add_enrichment_truth, make_population

START = datetime(2016, 1, 1, tzinfo=UTC)
MIN_UPLOAD = int(datetime(2015, 12, 1, tzinfo=UTC).timestamp())
MAX_UPLOAD = int(datetime(2018, 1, 1, tzinfo=UTC).timestamp())


def _population(n: int, seed: int) -> list:
    photos = make_population(n, years=1, seed=seed, start=START, bursty=False)
    add_enrichment_truth(photos, seed=seed)
    return photos


def _client(server: FlickrTestServer, key: str | None = None) -> FlickrClient:
    return FlickrClient(key or server.config.api_key, api_url=server.api_url, calls_per_hour=3.6e9)


def _harvest(corpus: Corpus, server: FlickrTestServer) -> None:
    with _client(server) as client:
        filters = SearchFilters(min_upload=MIN_UPLOAD, max_upload=MAX_UPLOAD)
        FlickrHarvester(corpus, client, filters).run([HarvestQuery("cat", "cat")])


def _truth_coverage(photos: list) -> dict[str, int]:
    return {
        "title": sum(1 for p in photos if p.title),
        "description": sum(1 for p in photos if p.description),
        "tags": sum(1 for p in photos if p.tags),
        "exif": sum(1 for p in photos if p.exif),
        "geo": sum(1 for p in photos if p.accuracy),
        "albums": sum(1 for p in photos if any(not private for _, _, private in p.albums)),
        "comments": sum(1 for p in photos if p.comments),
        "notes": sum(1 for p in photos if p.notes),
        "groups": sum(1 for p in photos if p.groups),
    }


def test_enriching_1000_photos_matches_the_server_truth(tmp_path: Path) -> None:
    photos = _population(1000, seed=3)
    corpus = Corpus.create(tmp_path / "c")
    with FlickrTestServer(photos) as server:
        _harvest(corpus, server)
        with _client(server) as client:
            report = FlickrEnricher(corpus, [client]).run()
        assert report.calls == 4000
        assert pending_calls(corpus, parse_kinds(None)) == []
        with _client(server) as client:  # a second run has nothing left to ask
            again = FlickrEnricher(corpus, [client]).run()
        assert again.calls == 0
    assert corpus.metadata_coverage() == _truth_coverage(photos)
    assert corpus.status_summary()["coverage"] == _truth_coverage(photos)
    by_id = {p.id: p for p in photos}
    rows = corpus.conn.execute(
        "SELECT p.source_id, e.kind, e.status, e.reason FROM enrichment e JOIN photos p ON p.id = e.photo_id"
    ).fetchall()
    assert len(rows) == 4000
    for source_id, kind, status, reason in rows:
        truth = by_id[source_id]
        if kind == "exif":
            expected = "unavailable" if truth.exif is None else "ok" if truth.exif else "empty"
            assert status == expected
            if expected == "unavailable":
                assert reason == "flickr_2"  # the owner hides EXIF: recorded, never asked again
        if kind == "comments":
            assert status == ("ok" if truth.comments else "empty")
    sample = next(p for p in photos if p.exif)
    exif = corpus.conn.execute(
        "SELECT x.make, x.model, x.iso, x.exposure_s, x.f_number, x.focal_length_mm, x.sources"
        " FROM photo_exif x JOIN photos p ON p.id = x.photo_id WHERE p.source_id = ?",
        (sample.id,),
    ).fetchone()
    num, den = [*sample.exif["ExposureTime"].split("/"), "1"][:2]
    assert exif[:3] == (sample.exif["Make"], sample.exif["Model"], int(sample.exif["ISO"]))
    assert exif[3] == pytest.approx(float(num) / float(den))
    assert exif[4] == pytest.approx(float(sample.exif["FNumber"]))
    assert exif[5] == pytest.approx(float(sample.exif["FocalLength"].split()[0]))
    assert set(json.loads(exif[6]).values()) == {"api"}
    commented = next(p for p in photos if p.comments)
    texts = [r[0] for r in corpus.conn.execute(
        "SELECT c.text FROM photo_comments c JOIN photos p ON p.id = c.photo_id WHERE p.source_id = ?"
        " ORDER BY c.comment_id", (commented.id,))]  # fmt: skip
    assert texts == [text for _, text in commented.comments]
    corpus.close()


def test_plan_states_the_cost_up_front() -> None:
    plan = EnrichPlan(photos=1_000_000, calls=4_000_000, keys=1, calls_per_hour=3600)
    assert plan.hours == pytest.approx(4_000_000 / 3600)
    assert "46.3 days" in plan.describe()
    assert "23.1 days" in EnrichPlan(1_000_000, 4_000_000, 2, 3600).describe()
    with pytest.raises(ConfigError, match="unknown enrichment kind"):
        parse_kinds("exif,likes")


def test_several_keys_share_the_work(tmp_path: Path) -> None:
    photos = _population(60, seed=5)
    config = ServerConfig(extra_keys=("second-key-aaaabbbbcccc",))
    corpus = Corpus.create(tmp_path / "c")
    with FlickrTestServer(photos, config) as server:
        _harvest(corpus, server)
        mark = len(server.state.requests)
        clients = [_client(server), _client(server, "second-key-aaaabbbbcccc")]
        FlickrEnricher(corpus, clients, ("exif", "contexts")).run()
        requests = server.state.requests[mark:]
    by_key: dict[int, set[str]] = {}
    for r in requests:
        by_key.setdefault(r["key"], set()).add(r["params"]["photo_id"])
    assert set(by_key) == {0, 1}
    assert not (by_key[0] & by_key[1])
    assert len(by_key[0] | by_key[1]) == 60
    assert corpus.conn.execute("SELECT COUNT(*) FROM enrichment").fetchone()[0] == 120
    corpus.close()


def _enrichment_rows(corpus_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(corpus_dir / "catalog.sqlite")
    try:
        return (
            conn.execute(
                "SELECT p.source_id, e.kind, e.status, e.reason, e.raw FROM enrichment e"
                " JOIN photos p ON p.id = e.photo_id ORDER BY 1, 2"
            ).fetchall()
            + conn.execute(
                "SELECT p.source_id, x.make, x.model, x.iso, x.sources, s.comment_count, s.note_count"
                " FROM photos p LEFT JOIN photo_exif x ON x.photo_id = p.id LEFT JOIN photo_social s"
                " ON s.photo_id = p.id ORDER BY 1"
            ).fetchall()
        )
    finally:
        conn.close()


def _stored_calls(corpus_dir: Path) -> set[tuple[str, str]]:
    methods = METHODS
    try:
        conn = sqlite3.connect(f"file:{corpus_dir / 'catalog.sqlite'}?mode=ro", uri=True, timeout=2)
        try:
            rows = conn.execute(
                "SELECT e.kind, p.source_id FROM enrichment e JOIN photos p ON p.id = e.photo_id"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return set()
    return {(methods[k], sid) for k, sid in rows}


def test_sigkill_twice_then_resume_repeats_no_stored_call(tmp_path: Path) -> None:
    seed = int(os.environ.get("PHOTOCORPUS_CHAOS_SEED", random.randrange(1 << 30)))
    print(f"chaos seed {seed}")
    rng = random.Random(seed)
    photos = _population(150, seed=8)
    settings = Settings(flickr=FlickrSettings(calls_per_hour=3.6e9))
    with FlickrTestServer(photos, ServerConfig(latency_s=0.004)) as server:
        env = {"FLICKR_API_KEY": server.config.api_key, "PHOTOCORPUS_FLICKR_API_URL": server.api_url}
        dirs = {}
        for name in ("reference", "chaos"):
            dirs[name] = tmp_path / name
            Corpus.create(dirs[name], settings).close()
            with Corpus.open(dirs[name]) as corpus:
                _harvest(corpus, server)
        run_cli("enrich", "flickr", "-C", str(dirs["reference"]), "-q", env=env)
        chaos = dirs["chaos"]
        for kill_at in sorted(rng.sample(range(20, 560), 2)):
            stored = _stored_calls(chaos)
            mark = len(server.state.requests)
            proc = subprocess.Popen(
                [sys.executable, "-m", "photocorpus", "enrich", "flickr", "-C", str(chaos), "-q"],
                env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while proc.poll() is None and len(_stored_calls(chaos)) < kill_at and time.monotonic() < deadline:
                time.sleep(0.005)
            assert proc.poll() is None, f"finished before the kill (seed {seed})"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            _assert_not_repeated(server, mark, stored)
        stored = _stored_calls(chaos)
        mark = len(server.state.requests)
        out = run_cli("enrich", "flickr", "-C", str(chaos), "-q", env=env)
        assert f"{600 - len(stored):,} API calls" in out.stdout  # the up-front plan counts only what is left
        _assert_not_repeated(server, mark, stored)
    assert _enrichment_rows(chaos) == _enrichment_rows(dirs["reference"])


def _assert_not_repeated(server: FlickrTestServer, mark: int, stored: set[tuple[str, str]]) -> None:
    with server.state.lock:
        later = server.state.requests[mark:]
    for r in later:
        key = (r["params"].get("method"), r["params"].get("photo_id"))
        assert key not in stored, f"{key} was asked again after it was stored"


def test_api_key_never_reaches_enrichment_output_or_catalog(tmp_path: Path) -> None:
    photos = _population(30, seed=12)
    config = ServerConfig(api_key="ENRICH-secret-9d8c7b6a5f", fault_rate=0.2, retry_after="0", seed=2)
    corpus_dir = tmp_path / "c"
    Corpus.create(
        corpus_dir, Settings(flickr=FlickrSettings(calls_per_hour=3.6e9, backoff_base_s=0.01))
    ).close()
    with FlickrTestServer(photos, config) as server:
        with Corpus.open(corpus_dir) as corpus:
            server.config.fault_rate = 0.0
            _harvest(corpus, server)
            server.config.fault_rate = 0.2
        env = {"FLICKR_API_KEY": config.api_key, "PHOTOCORPUS_FLICKR_API_URL": server.api_url}
        out = run_cli("--verbose", "enrich", "flickr", "-C", str(corpus_dir), env=env)
        assert "retrying" in out.stderr
        status = run_cli("status", "-C", str(corpus_dir))
    assert "albums" in status.stdout and "Metadata coverage" in status.stdout
    for text in (out.stdout, out.stderr, status.stdout):
        assert config.api_key not in text
    for path in corpus_dir.rglob("*"):
        if path.is_file():
            assert config.api_key.encode() not in path.read_bytes(), path


def test_every_enrichment_key_is_registered_as_a_secret() -> None:
    # The test above passes even when no key is registered: at the default log levels no line
    # carries the key at all. Registration is what redacts it where one would (httpx at INFO, a
    # server that echoes the request URL into an error message).
    keys = api_keys_from("ENRICH-first-1a2b3c4d, ENRICH-second-5e6f7a8b", None, ["ENRICH-extra-9c0d1e2f"])
    assert len(keys) == 3
    clients = [FlickrClient.from_settings(key, FlickrSettings()) for key in keys]
    try:
        for key in keys:
            line = f"HTTP Request: GET https://api.flickr.com/services/rest/?api_key={key}&method=x"
            assert key not in redact(line)
    finally:
        for client in clients:
            client.close()


# ------------------------------------------------------------------------------------------ EXIF from files
def _jpeg_with_exif(base: Path) -> bytes:
    im = Image.open(base).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "FUJIFILM"
    exif[0x0110] = "X100V"
    sub = exif.get_ifd(0x8769)
    sub[0x829A] = 1 / 250
    sub[0x829D] = 5.6
    sub[0x8827] = 640
    sub[0x920A] = 23.0
    sub[0x9003] = "2019:07:14 18:30:05"
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


def test_exif_read_from_files_and_merged_with_api_values(tmp_path: Path, instany_images: Path) -> None:
    data = _jpeg_with_exif(sorted(instany_images.glob("*.jpg"))[0])
    fields = fields_from_bytes(data)
    assert fields["make"] == "FUJIFILM" and fields["model"] == "X100V" and fields["iso"] == 640
    assert fields["exposure_s"] == pytest.approx(1 / 250) and fields["f_number"] == pytest.approx(5.6)
    assert fields["taken_at"] == "2019-07-14T18:30:05Z"
    assert fields_from_bytes((instany_images / sorted(os.listdir(instany_images))[1]).read_bytes()) == {}

    src = tmp_path / "src" / "x"
    src.mkdir(parents=True)
    (src / "withexif.jpg").write_bytes(data)
    corpus = Corpus.create(tmp_path / "c")
    import_folder(corpus, src.parent, workers=1)
    pid = corpus.conn.execute("SELECT id FROM photos").fetchone()[0]
    store_exif(corpus, pid, {"make": "Other", "lens": "23mm F2"}, "api")  # file values win; gaps filled
    row = corpus.conn.execute(
        "SELECT make, lens, iso, sources FROM photo_exif WHERE photo_id = ?", (pid,)
    ).fetchone()
    assert row[:3] == ("FUJIFILM", "23mm F2", 640)
    sources = json.loads(row[3])
    assert sources["make"] == "file" and sources["iso"] == "file" and sources["lens"] == "api"
    assert corpus.metadata_coverage()["exif"] == 1
    corpus.close()


# ---------------------------------------------------------------------------------------------- provenance
XSS = "<script>alert('x')</script> & \"quotes\" ]]> 😀"


def test_embedded_provenance_round_trips_with_an_independent_reader(instany_images: Path) -> None:
    original = sorted(instany_images.glob("*.jpg"))[2].read_bytes()
    prov = Provenance(
        "flickr",
        "123",
        page_url="https://www.flickr.com/photos/me/123",
        owner=XSS,
        title="Bridge at night " + "x" * 200_000,  # a 200 kB title must still fit the 64 kB segments
        license="CC BY 2.0",
        tags=["bridge", "night", XSS],
    )
    stamped = embed_provenance(original, prov)
    with Image.open(io.BytesIO(stamped)) as im, Image.open(io.BytesIO(original)) as orig:
        np.testing.assert_array_equal(np.asarray(im), np.asarray(orig))  # no re-encode
        comment = json.loads(im.info["comment"])
        xmp = im.info["xmp"]
    assert comment["source_url"] == prov.source_url and comment["owner"] == XSS
    assert comment["tags"] == ["bridge", "night", XSS]
    root = ET.fromstring(xmp.decode("utf-8").split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    ns = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}
    desc = root.find(".//rdf:Description", ns)
    assert desc.find("dc:source", ns).text == prov.source_url
    assert desc.find("dc:creator/rdf:Seq/rdf:li", ns).text == XSS
    assert desc.find("dc:rights/rdf:Alt/rdf:li", ns).text == "CC BY 2.0"
    assert [li.text for li in desc.findall("dc:subject/rdf:Bag/rdf:li", ns)] == ["bridge", "night", XSS]
    assert desc.find("dc:title/rdf:Alt/rdf:li", ns).text.startswith("Bridge at night")
    # Stamping again replaces the stamp instead of stacking a second one.
    twice = embed_provenance(stamped, Provenance("test", "2", page_url="https://example.org/2"))
    assert twice.count(b"http://ns.adobe.com/xap/1.0/\x00") == 1
    with Image.open(io.BytesIO(twice)) as im:
        assert json.loads(im.info["comment"])["source_url"] == "https://example.org/2"
    with pytest.raises(NotAJpegError):
        embed_provenance(b"\x89PNG\r\n\x1a\n....", prov)


# ------------------------------------------------------------------------------------------------ exports
def test_mirflickr_json_export_carries_every_enriched_kind(tmp_path: Path) -> None:
    from photocorpus.export.mirflickr_json import export_mirflickr_json

    photos = _population(120, seed=11)
    corpus = Corpus.create(tmp_path / "c")
    with FlickrTestServer(photos) as server:
        _harvest(corpus, server)
        with _client(server) as client:
            FlickrEnricher(corpus, [client]).run()
    out = tmp_path / "json"
    assert export_mirflickr_json(corpus, out) == 120
    ids = dict(corpus.conn.execute("SELECT source_id, id FROM photos").fetchall())
    records = {}
    for path in out.glob("*/*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        pid = ids[record["source_id"]]
        assert path.relative_to(out).as_posix() == f"{pid // 10000}/p{pid}.json"  # Flickr photos: catalog id
        records[record["source_id"]] = record
    assert len(records) == 120
    for truth in photos:
        record = records[truth.id]  # the s16a kinds under the s16a page's names, every one present
        if truth.exif is None:
            assert record["unavailable"]["exif"] == "flickr_2" and record["exif_data"] is None
        elif truth.exif:
            assert record["exif_data"]["make"] == truth.exif["Make"]
            assert record["exif_data"]["iso"] == int(truth.exif["ISO"])
            assert record["exif_data"]["sources"]["make"] == "api"
        else:
            assert record["exif_data"] is None
        assert [c["text"] for c in record["user_comments"]] == [t for _, t in truth.comments or []]
        assert [c["authorname"] for c in record["user_comments"]] == [a for a, _ in truth.comments or []]
        assert [n["text"] for n in record["notes"]] == truth.notes
        assert record["note_count"] == len(truth.notes) and record["views"] == 12
        public_albums = sorted((i, t) for i, t, private in truth.albums if not private)
        assert sorted((a["id"], a["title"]) for a in record["album_allocation"]) == public_albums
        assert sorted((g["id"], g["title"]) for g in record["group_allocation"]) == sorted(truth.groups)
        assert [t["raw"] for t in record.get("tag_authors", [])] == list(truth.tags)
        assert (record["description"] or "") == truth.description
        assert record["title"] == truth.title and record["tags"] == list(truth.tags)
    corpus.close()


def test_export_embeds_provenance_that_an_independent_reader_gets_back(
    tmp_path: Path, instany_images: Path
) -> None:
    src = tmp_path / "src" / "bridges"
    src.mkdir(parents=True)
    metas = {}
    for i, image in enumerate(sorted(instany_images.glob("*.jpg"))[:6]):
        (src / f"p{i}.jpg").write_bytes(image.read_bytes())
        metas[f"p{i}"] = {
            "title": [
                "Brooklyn bridge at dusk",
                "Ferry to Staten Island",
                "Cat on a windowsill",
                "Coffee in Soho",
                "Snow in Central Park",
                f"Night lights {XSS}",
            ][i],
            "owner": f"owner{i}",
            "license": "CC BY-SA 2.0",
            "tags": ["bridge", f"t{i}"],
            "page_url": f"https://www.flickr.com/photos/owner{i}/{1000 + i}/",
        }
        (src / f"p{i}.json").write_text(json.dumps(metas[f"p{i}"]), encoding="utf-8")
    corpus_dir = tmp_path / "c"
    run_cli("init", str(corpus_dir))
    run_cli("import", str(src.parent), "--corpus", str(corpus_dir), "--quiet")
    run_cli("curate", "--corpus", str(corpus_dir), "--quiet")
    out = tmp_path / "out"
    run_cli("export", "imagefolder", str(out), "--corpus", str(corpus_dir), "--embed-provenance", "--quiet")
    plain = tmp_path / "plain"
    run_cli("export", "imagefolder", str(plain), "--corpus", str(corpus_dir), "--quiet")
    exported = sorted(out.glob("*/*/*.jpg"))
    assert len(exported) == 6
    ns = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}
    for path in exported:
        twin = plain / path.relative_to(out)
        assert twin.read_bytes() != path.read_bytes()
        with Image.open(path) as im, Image.open(twin) as orig:
            np.testing.assert_array_equal(np.asarray(im), np.asarray(orig))  # stamped, not re-encoded
            comment = json.loads(im.info["comment"])
            xmp = im.info["xmp"].decode("utf-8")
        meta = next(m for m in metas.values() if m["page_url"] == comment["source_url"])
        assert comment["owner"] == meta["owner"] and comment["title"] == meta["title"]
        assert comment["license"] == meta["license"] and comment["tags"] == meta["tags"]
        desc = ET.fromstring(xmp.split("?>", 1)[1].rsplit("<?xpacket", 1)[0]).find(".//rdf:Description", ns)
        assert desc.find("dc:source", ns).text == meta["page_url"]
        assert desc.find("dc:title/rdf:Alt/rdf:li", ns).text == meta["title"]
    refused = run_cli(
        "export", "parquet", str(tmp_path / "x.parquet"), "--corpus", str(corpus_dir), "--embed-provenance",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "holds no images" in refused.stderr
