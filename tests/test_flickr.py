"""Flickr harvest against a Flickr-compatible server on 127.0.0.1, and the parser on a real response."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from photocorpus.corpus import Corpus
from photocorpus.errors import ConfigError
from photocorpus.flickr_api import FlickrAuthError, FlickrClient
from photocorpus.sources.flickr import (
    FlickrHarvester,
    HarvestQuery,
    SearchFilters,
    parse_licenses,
    parse_search_photo,
    read_query_file,
)
from tests.conftest import shared_data
from tests.fixtures.flickr_server import FakePhoto, FlickrTestServer, ServerConfig, make_population

T_END = int(datetime(2020, 6, 1, tzinfo=UTC).timestamp())


def client_for(server: FlickrTestServer, **kw) -> FlickrClient:
    opts = {"calls_per_hour": 3.6e9, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "read_timeout_s": 5.0}
    opts.update(kw)
    return FlickrClient(server.config.api_key, api_url=server.api_url, **opts)


def harvested_ids(corpus: Corpus) -> set[str]:
    return {r[0] for r in corpus.conn.execute("SELECT source_id FROM photos WHERE source = 'flickr'")}


# ---------------------------------------------------------------------------------------------- parser
def test_real_recorded_response_parses() -> None:
    path = shared_data("flickr-api/photos_search_text-cat_page1.json")
    raw = json.loads(path.read_text())
    photos = raw["photos"]["photo"]
    records = [parse_search_photo(p, ["cat"]) for p in photos]
    assert len(records) == 20
    with_large = [r for r in records if any(u.size_key == "url_l" for u in r.urls)]
    assert len(with_large) == 19
    for rec, src in zip(records, photos, strict=True):
        assert rec.labels == ["cat"] and rec.source == "flickr" and rec.source_id == src["id"]
        for url in rec.urls:
            assert isinstance(url.width, int) and isinstance(url.height, int)
            assert url.width == int(src[f"width_{url.size_key[4:]}"])
        assert rec.uploaded_at and rec.uploaded_at.endswith("Z")
        clean = rec.extra.get("description_text") or ""
        assert "<a " not in clean and "&amp;" not in clean and "&quot;" not in clean
        assert rec.caption == (src["description"]["_content"] or None)
        assert rec.tags == src["tags"].split()
        assert rec.owner == src["ownername"]
    first = records[0]
    assert first.extra["description_text"].endswith("Large.")  # the <a> tag's text survives, the tag does not
    assert first.uploaded_at == "2008-04-28T13:23:04Z"
    assert first.page_url == "https://www.flickr.com/photos/58722587@N00/2448337677"
    missing = next(r for r in records if r not in with_large)
    assert not any(u.size_key == "url_l" for u in missing.urls)


def test_geo_zero_means_not_geotagged_and_strings_are_numbers() -> None:
    rec = parse_search_photo(
        {"id": 5, "owner": "o", "latitude": 0, "longitude": "0", "accuracy": "0", "license": "4",
         "url_z": "http://x/z.jpg", "width_z": "640", "height_z": "480", "dateupload": "1500000000"},
        ["x"],
    )  # fmt: skip
    assert (rec.lat, rec.lon, rec.geo_accuracy) == (None, None, None)
    assert rec.license == "CC BY 2.0"
    assert rec.urls[0].width == 640
    geo = parse_search_photo({"id": 6, "latitude": "48.85", "longitude": 2.35, "accuracy": "16"}, ["x"])
    assert (geo.lat, geo.lon, geo.geo_accuracy) == (48.85, 2.35, 16)


def test_query_file_labels_negatives_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "place_rec_queries.txt"
    path.write_text("# cities\nlondon\nnyc\tnew york\n\n-wedding\n-party -birthday\n", encoding="utf-8")
    queries = read_query_file(path)
    assert [(q.label, q.text) for q in queries] == [("london", "london"), ("nyc", "new york")]
    assert queries[1].search_text() == "new york -wedding -party -birthday"
    (tmp_path / "empty.txt").write_text("-only\n")
    with pytest.raises(ConfigError, match="no positive queries"):
        read_query_file(tmp_path / "empty.txt")


def test_licence_names() -> None:
    assert parse_licenses(["cc"])[:3] == ("1", "2", "3")
    assert "0" not in parse_licenses(["cc"]) and "9" in parse_licenses(["cc"])
    assert parse_licenses(["by,by-sa", "4"]) == ("4", "5")
    with pytest.raises(ConfigError, match="unknown licence"):
        parse_licenses(["nope"])


# ---------------------------------------------------------------------------------------------- windows
def test_12000_bursty_photos_are_all_found_within_twice_the_minimum_calls(tmp_path: Path) -> None:
    photos = make_population(12_000, n_other=3_000, years=5, seed=7)
    truth = {p.id for p in photos if "cat" in p.words}
    assert len(truth) == 12_000
    corpus = Corpus.create(tmp_path / "c")
    with FlickrTestServer(photos) as server, client_for(server) as client:
        filters = SearchFilters(
            min_upload=int(datetime(2014, 12, 1, tzinfo=UTC).timestamp()), max_upload=T_END
        )
        report = FlickrHarvester(corpus, client, filters).run([HarvestQuery("cat", "cat")])
        requests = server.ok_requests()
    assert harvested_ids(corpus) == truth
    minimum = math.ceil(12_000 / filters.per_page)
    assert report.api_calls <= 2 * minimum, report
    per_page = filters.per_page
    assert max(int(r["params"]["page"]) for r in requests) * per_page <= 4000  # never past the cap
    assert corpus.status_summary()["labels"] == {"cat": 12_000}
    corpus.close()


class _StopAfterLoggedPages:
    """A stop flag that trips once the corpus has logged ``pages`` harvest pages (checked between pages,
    so the harvest stops right after a logged page, as a kill just after a commit would leave it)."""

    def __init__(self, corpus: Corpus, pages: int) -> None:
        self.corpus, self.pages = corpus, pages

    def __bool__(self) -> bool:
        return self.corpus.conn.execute("SELECT COUNT(*) FROM harvest_log").fetchone()[0] >= self.pages


def test_a_harvest_stopped_twice_then_resumed_makes_exactly_the_calls_of_one_run(tmp_path: Path) -> None:
    # Stopped right after a logged page (a graceful stop, or a kill just after a commit), the resumes
    # ask for no page twice and repeat no probe of an oversized window: the windows are 6,000 photos
    # over two years, so the first probes are shrunk before anything is logged.
    photos = make_population(6_000, n_other=1_000, years=2, seed=17)
    filters = SearchFilters(min_upload=int(datetime(2014, 12, 1, tzinfo=UTC).timestamp()), max_upload=T_END)
    with FlickrTestServer(photos) as server, client_for(server) as client:
        with Corpus.create(tmp_path / "reference") as reference:
            FlickrHarvester(reference, client, filters).run([HarvestQuery("cat", "cat")])
            uninterrupted = len(server.ok_requests())
            logged = reference.conn.execute("SELECT COUNT(*) FROM harvest_log").fetchone()[0]
        with Corpus.create(tmp_path / "c") as corpus:
            for stop_at in (logged // 3, 2 * logged // 3):
                stopped = FlickrHarvester(
                    corpus, client, filters, stop=_StopAfterLoggedPages(corpus, stop_at)
                )
                assert stopped.run([HarvestQuery("cat", "cat")]).interrupted
            FlickrHarvester(corpus, client, filters).run([HarvestQuery("cat", "cat")])
            assert harvested_ids(corpus) == {p.id for p in photos if "cat" in p.words}
            assert len(server.ok_requests()) - uninterrupted == uninterrupted


def test_a_single_burst_larger_than_the_cap_is_capped_not_looped(tmp_path: Path) -> None:
    t = int(datetime(2019, 5, 5, tzinfo=UTC).timestamp())
    photos = [
        FakePhoto(id=str(i), owner="o", ownername="o", title="", description="", words=frozenset({"cat"}),
                  tags=("cat",), dateupload=t, datetaken="2019-05-05 00:00:00", license="0")
        for i in range(4_200)
    ]  # fmt: skip
    corpus = Corpus.create(tmp_path / "c")
    with FlickrTestServer(photos) as server, client_for(server) as client:
        harvester = FlickrHarvester(corpus, client, SearchFilters(min_upload=t - 10, max_upload=t + 10))
        report = harvester.run([HarvestQuery("cat", "cat")])
        pages = [int(r["params"]["page"]) for r in server.ok_requests()]
    assert report.capped_windows == 1
    assert len(harvested_ids(corpus)) == 4000
    assert max(pages) == 8
    corpus.close()


def test_overlapping_queries_store_the_overlap_once_with_both_labels(tmp_path: Path) -> None:
    rng = random.Random(3)
    base = int(datetime(2018, 1, 1, tzinfo=UTC).timestamp())
    groups = {("london",): 40, ("bridge",): 30, ("bridge", "london"): 25, ("london", "wedding"): 10}
    photos, i = [], 0
    for words, n in groups.items():
        for _ in range(n):
            photos.append(
                FakePhoto(id=str(500 + i), owner="o", ownername="o", title="t", description="d",
                          words=frozenset(words), tags=words, dateupload=base + rng.randrange(86400 * 300),
                          datetaken="2018-01-01 00:00:00", license="4")
            )  # fmt: skip
            i += 1
    qfile = tmp_path / "queries.txt"
    qfile.write_text("london\nbridge\n-wedding\n", encoding="utf-8")
    corpus = Corpus.create(tmp_path / "c")
    with FlickrTestServer(photos) as server, client_for(server) as client:
        FlickrHarvester(corpus, client, SearchFilters(min_upload=base, max_upload=base + 86400 * 400)).run(
            read_query_file(qfile)
        )
        texts = {r["params"].get("text") for r in server.ok_requests()}
    assert texts == {"london -wedding", "bridge -wedding"}
    assert corpus.count_photos() == 40 + 30 + 25
    both = corpus.conn.execute(
        "SELECT COUNT(*) FROM (SELECT photo_id FROM photo_labels GROUP BY photo_id HAVING COUNT(*) = 2)"
    ).fetchone()[0]
    assert both == 25
    assert corpus.status_summary()["labels"] == {"london": 65, "bridge": 55}
    corpus.close()


def test_faults_do_not_change_the_result_and_retries_are_counted(tmp_path: Path) -> None:
    photos = make_population(3_000, n_other=500, years=2, seed=11)
    truth = {p.id for p in photos if "cat" in p.words}
    config = ServerConfig(fault_rate=0.10, slow_s=1.5, seed=5, retry_after="0")
    corpus = Corpus.create(tmp_path / "c")
    with FlickrTestServer(photos, config) as server, client_for(server, read_timeout_s=0.5) as client:
        start = int(datetime(2014, 12, 1, tzinfo=UTC).timestamp())
        filters = SearchFilters(min_upload=start, max_upload=T_END, per_page=25)
        report = FlickrHarvester(corpus, client, filters).run([HarvestQuery("cat", "cat")])
        faults = [r["fault"] for r in server.state.requests if r["fault"]]
    assert harvested_ids(corpus) == truth
    assert set(faults) == {"429", "fail105", "503", "timeout"}
    # Every injected fault was retried (a loaded machine may time out a healthy call too).
    assert report.retries >= len(faults)
    counters = corpus.status_summary()["counters"]["harvest"]
    assert counters["retries"] == report.retries
    assert counters["retries_timeout"] >= 1 and counters["retries_http_429"] >= 1
    assert counters["retries_stat_fail_105"] >= 1 and counters["retries_http_503"] >= 1
    corpus.close()


def test_api_retry_after_is_waited_as_told_and_other_faults_back_off() -> None:
    # The whole-harvest fault test above sends Retry-After: 0, so it cannot tell "waited as told"
    # from "backed off instead"; this one can: 7 s is outside every backoff this client may pick.
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}, text="Too Many Requests"),
        httpx.Response(503, text="Service Unavailable"),
        httpx.Response(200, json={"stat": "fail", "code": 105, "message": "Service currently unavailable"}),
        httpx.Response(200, json={"stat": "ok", "answer": 42}),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[len(seen) - 1]

    sleeps: list[float] = []
    client = FlickrClient(
        "retry-after-key-0c1d2e",
        api_url="https://api.flickr.invalid/services/rest/",
        calls_per_hour=3.6e9,
        backoff_base_s=1.0,
        backoff_cap_s=60.0,
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        rng=random.Random(0),
    )
    with client:
        assert client.call("flickr.test.echo")["answer"] == 42
    assert len(seen) == 4
    assert sleeps[0] == 7.0  # Retry-After, not a backoff
    assert 0 <= sleeps[1] <= 2.0 and 0 <= sleeps[2] <= 4.0  # full-jitter backoff, attempts 1 and 2
    assert client.stats.by_cause == {"http_429": 1, "http_503": 1, "stat_fail_105": 1}


def test_bad_key_stops_at_once_with_advice(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    with FlickrTestServer(make_population(10, seed=1)) as server:
        client = FlickrClient("wrong-key-abcdef", api_url=server.api_url, calls_per_hour=3.6e9)
        with pytest.raises(FlickrAuthError, match="FLICKR_API_KEY") as info:
            FlickrHarvester(corpus, client, SearchFilters(max_upload=T_END)).run([HarvestQuery("cat", "cat")])
        assert "wrong-key-abcdef" not in str(info.value)
        assert len(server.state.requests) == 1
    corpus.close()


def test_refresh_walks_from_the_last_harvest_to_now(tmp_path: Path) -> None:
    t1 = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp())
    early = make_population(300, years=1, seed=2, start=datetime(2018, 1, 1, tzinfo=UTC), bursty=False)
    late = make_population(
        120, years=1, seed=3, start=datetime(2019, 1, 2, tzinfo=UTC), bursty=False, id_offset=90_000_000
    )
    corpus = Corpus.create(tmp_path / "c")
    with FlickrTestServer(early) as server, client_for(server) as client:
        filters = SearchFilters(min_upload=int(datetime(2017, 12, 1, tzinfo=UTC).timestamp()), per_page=100)
        FlickrHarvester(corpus, client, filters, now=t1).run([HarvestQuery("cat", "cat")])
        assert harvested_ids(corpus) == {p.id for p in early}
        server.state.photos.extend(late)  # new uploads arrive after the first harvest
        t2 = int(datetime(2020, 6, 1, tzinfo=UTC).timestamp())
        again = FlickrHarvester(corpus, client, filters, now=t2).run([HarvestQuery("cat", "cat")])
        assert again.api_calls == 0  # complete: nothing to do without --refresh
        FlickrHarvester(corpus, client, filters, now=t2).run([HarvestQuery("cat", "cat")], refresh=True)
    assert harvested_ids(corpus) == {p.id for p in early + late}
    corpus.close()
