"""The fetch stage end to end against the local image server: size rules, records, expiry, the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocorpus import reasons
from photocorpus.config import FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.fetch.plan import pending_pages
from photocorpus.fetch.stage import fetch_photos
from photocorpus.records import ImageURL, PhotoRecord
from photocorpus.sources.urls import harvest_url_list
from tests.conftest import run_cli
from tests.fixtures.image_server import ImageServer, Route, real_jpeg


def _settings(**changes: object) -> FetchSettings:
    base = {"allow_private_urls": True, "host_rate_per_s": 0, "backoff_base_s": 0.01, "workers": 1}
    return FetchSettings.model_validate({**base, **changes})


def _photo(source_id: str, *urls: ImageURL, label: str = "nyc") -> PhotoRecord:
    return PhotoRecord("test", source_id, [label], urls=list(urls))


@pytest.fixture()
def server():
    with ImageServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def photos(instany_images: Path) -> list[Path]:
    return sorted(instany_images.glob("*.jpg"))[:20]


def _file_row(corpus: Corpus, photo_id: int) -> dict:
    return corpus.photo(photo_id)["file"]


def test_large_size_preferred_original_when_missing_or_tiny(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    large = real_jpeg(photos[0], (1024, 768))
    original = real_jpeg(photos[1], (2048, 1536))
    tiny_placeholder = real_jpeg(photos[2], (100, 75), quality=30)
    assert len(tiny_placeholder) < 5000
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos(
        [
            _photo(
                "has_large",
                ImageURL("url_l", server.add("/1_l.jpg", Route(large))),
                ImageURL("url_o", server.add("/1_o.jpg", Route(original))),
            ),
            _photo("no_large", ImageURL("url_o", server.add("/2_o.jpg", Route(original)))),
            _photo(
                "placeholder",
                ImageURL("url_l", server.add("/3_l.jpg", Route(tiny_placeholder))),
                ImageURL("url_o", server.add("/3_o.jpg", Route(original))),
            ),
            _photo(
                "large_404",
                ImageURL("url_l", server.add("/4_l.jpg", Route(status=404))),
                ImageURL("url_o", server.add("/4_o.jpg", Route(original))),
            ),
            _photo(
                "only_medium",
                ImageURL("url_z", server.add("/5_z.jpg", Route(real_jpeg(photos[3], (800, 600))))),
            ),
        ]
    )
    report = fetch_photos(corpus, _settings())
    assert (report.fetched, report.failed) == (5, 0), report.failures
    rows = {
        sid: _file_row(corpus, pid)
        for sid, pid in zip(
            ["has_large", "no_large", "placeholder", "large_404", "only_medium"], ids, strict=True
        )
    }
    assert rows["has_large"]["origin"].endswith("/1_l.jpg") and server.requests_to("/1_o.jpg") == 0
    assert (rows["has_large"]["width"], rows["has_large"]["height"]) == (1024, 768)
    for key, path in (("no_large", "/2_o.jpg"), ("placeholder", "/3_o.jpg"), ("large_404", "/4_o.jpg")):
        row = rows[key]
        assert row["origin"].endswith(path), key
        assert (row["original_width"], row["original_height"]) == (2048, 1536)
        assert (row["width"], row["height"]) == (1024, 768)  # the original, downsampled to max edge 1024
        assert row["sha256"] == hashlib.sha256(original).hexdigest() and row["original_bytes"] == len(
            original
        )
    assert (rows["only_medium"]["width"], rows["only_medium"]["height"]) == (800, 600)
    assert rows["has_large"]["http_status"] == 200
    stored = Image.open(corpus.abs_path(rows["no_large"]["path"]))
    assert stored.size == (1024, 768) and stored.format == "JPEG"
    assert corpus.verify().ok


def test_default_size_only_and_training_geometry(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos(
        [
            _photo(
                str(i),
                ImageURL("url_m", server.add(f"/{i}_m.jpg", Route(real_jpeg(p, (500, 375)))), 500, 375),
                ImageURL("url_l", server.add(f"/{i}_l.jpg", Route(real_jpeg(p, (1024, 768)))), 1024, 768),
            )
            for i, p in enumerate(photos[:4])
        ]
    )
    fetch_photos(
        corpus, _settings(default_size_only=True, min_side_px=0, size="300x300", resize_mode="squash")
    )
    for pid in ids:
        row = _file_row(corpus, pid)
        assert row["origin"].endswith("_m.jpg") and (row["width"], row["height"]) == (300, 300)
    assert all(server.requests_to(f"/{i}_l.jpg") == 0 for i in range(4))


def test_failures_are_recorded_with_reason_url_and_status(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos(
        [
            _photo("gone", ImageURL("url_l", server.add("/gone.jpg", Route(status=410)))),
            _photo(
                "small", ImageURL("url_l", server.add("/small.jpg", Route(real_jpeg(photos[0], (400, 300)))))
            ),
            _photo(
                "huge", ImageURL("url_l", server.add("/huge.jpg", Route(real_jpeg(photos[1], (1024, 1024)))))
            ),
            _photo("nourl"),
        ]
    )
    report = fetch_photos(corpus, _settings(max_response_bytes=80_000))
    assert report.failures == {"http_410": 1, "too_small": 1, "response_too_large": 1, "no_url": 1}
    conn = sqlite3.connect(corpus.root / "catalog.sqlite")
    log = {r[0]: r[1:] for r in conn.execute("SELECT photo_id, url, http_status, size_key FROM fetch_log")}
    assert log[ids[0]] == (server.url("/gone.jpg"), 410, "url_l")
    assert log[ids[1]][1] == 200
    stages = dict(conn.execute("SELECT photo_id, reason FROM stages WHERE stage = 'fetch'").fetchall())
    assert stages == {ids[0]: "http_410", ids[1]: "too_small", ids[2]: "response_too_large", ids[3]: "no_url"}
    assert corpus.verify().ok and not list((corpus.root / "images").rglob("*.jpg"))


def test_expired_signed_urls_and_their_automatic_retry(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    past = format(int((datetime.now(UTC) - timedelta(days=2)).timestamp()), "x")
    future = format(int((datetime.now(UTC) + timedelta(days=2)).timestamp()), "x")
    corpus = Corpus.create(tmp_path / "c")
    forbidden = Route(status=403)
    ids = corpus.add_photos(
        [
            _photo("ig_expired", ImageURL("display", server.add("/e.jpg", forbidden) + f"?oe={past}&oh=ab")),
            _photo("ig_banned", ImageURL("display", server.add("/b.jpg", forbidden) + f"?oe={future}")),
            _photo("old_harvest", ImageURL("display", server.add("/o.jpg", forbidden))),
        ]
    )
    old = (datetime.now(UTC) - timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with corpus.transaction() as conn:
        conn.execute("UPDATE image_urls SET harvested_at = ? WHERE photo_id = ?", (old, ids[2]))
    report = fetch_photos(corpus, _settings())
    assert report.failures == {"url_expired": 2, "http_403": 1}
    stages = {pid: corpus.photo(pid)["stages"]["fetch"]["reason"] for pid in ids}
    assert stages == {ids[0]: "url_expired", ids[1]: "http_403", ids[2]: "url_expired"}
    # nothing changed: a plain re-run leaves them alone
    assert fetch_photos(corpus, _settings()).visited == 0
    # re-harvest gives a fresh URL: the expired photo is fetched by the next plain run
    fresh = server.add("/fresh.jpg", Route(real_jpeg(photos[0], (800, 600))))
    with corpus.transaction() as conn:
        conn.execute("UPDATE stages SET updated_at = '2000-01-01T00:00:00Z' WHERE photo_id = ?", (ids[0],))
    corpus.add_photos([_photo("ig_expired", ImageURL("display", fresh))])
    again = fetch_photos(corpus, _settings())
    assert (again.visited, again.fetched) == (1, 1)
    assert corpus.photo(ids[0])["file"]["origin"] == fresh


def test_retry_failed_selects_reasons(tmp_path: Path, server: ImageServer, photos: list[Path]) -> None:
    corpus = Corpus.create(tmp_path / "c")
    body = real_jpeg(photos[0], (800, 600))
    flaky = Route(body, fault="status", fault_status=503, fail_times=-1)
    corpus.add_photos(
        [
            _photo("flaky", ImageURL("url_l", server.add("/flaky.jpg", flaky))),
            _photo("missing", ImageURL("url_l", server.add("/missing.jpg", Route(status=404)))),
            _photo(
                "small", ImageURL("url_l", server.add("/small.jpg", Route(real_jpeg(photos[1], (400, 300)))))
            ),
        ]
    )
    first = fetch_photos(corpus, _settings(max_retries=1))
    assert first.failures == {"http_503": 1, "http_404": 1, "too_small": 1}
    flaky.fail_times = 0  # the server recovers
    server.add("/missing.jpg", Route(body))  # (a 404 is not transient: not retried by default)
    transient = fetch_photos(corpus, _settings(), retry_failed=[])
    assert transient.retried_reasons == ["http_503"] and (transient.visited, transient.fetched) == (1, 1)
    named = fetch_photos(corpus, _settings(min_side_px=300), retry_failed=["too_small"])
    assert (named.visited, named.fetched) == (1, 1)
    status = corpus.status_summary()
    assert status["stages"]["fetch"] == {"done": 2, "failed": 1}
    assert status["failures_by_stage"]["fetch"] == {"http_404": 1}


def test_fetch_cli_size_status_and_verbose_log(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    lines = []
    for i, p in enumerate(photos[:6]):
        route = Route(real_jpeg(p, (1024, 1024)))
        if i == 0:
            route = Route(route.body, fault="status", fault_status=429, retry_after="0", fail_times=1)
        if i == 1:
            route = Route(b"<html>oops</html>", content_type="text/html")
        lines.append(server.add(f"/{i}.jpg", route) + "\n")
    url_list = tmp_path / "urls.txt"
    url_list.write_text("".join(lines))
    corpus = str(tmp_path / "c")
    with Corpus.create(corpus) as c:
        harvest_url_list(c, url_list)
    out = run_cli(
        "fetch", "-C", corpus, "-q", "--size", "300x300", "--resize-mode", "center_crop",
        "--allow-private-urls", "--host-rate", "0", "--verbose", "--workers", "2",
    )  # fmt: skip
    assert "5 fetched, 1 failed (not_an_image=1)" in out.stdout
    assert "retry 1/4" in out.stderr and "after http_429" in out.stderr and "Retry-After" in out.stderr
    status = json.loads(run_cli("status", "--json", "-C", corpus).stdout)
    assert status["stages"]["fetch"] == {"done": 5, "failed": 1}
    assert status["failures_by_stage"]["fetch"] == {"not_an_image": 1}
    assert status["counters"]["fetch"]["retries"] == 1
    for img in (Path(corpus) / "images").rglob("*.jpg"):
        assert Image.open(img).size == (300, 300)
    with Corpus.open(corpus) as c:
        assert fetch_photos(c, _settings()).visited == 0  # resumable: nothing left to do


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "300"], "must look like 300x300"),
        (["--resize-mode", "stretch"], "resize_mode"),
        (["timeout"], "reasons go after --retry-failed"),
        (["--aspect", "2"], "min:max"),
        (["--size-policy", "largest"], "size_policy must be one of fallback, strict, not 'largest'"),
        (["--frame-rule", "inner"], "frame_rule must be one of edge, im2gps, not 'inner'"),
        (["--im2gps", "--default-size-only"], "default_size_only and size_policy strict contradict"),
    ],
)
def test_fetch_cli_refuses_bad_options_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from photocorpus.cli import app
    from photocorpus.errors import ConfigError

    Corpus.create(tmp_path / "c").close()
    result = CliRunner().invoke(app, ["fetch", "-C", str(tmp_path / "c"), "-q", *args])
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)


def test_user_agent_names_photocorpus(tmp_path: Path, server: ImageServer, photos: list[Path]) -> None:
    corpus = Corpus.create(tmp_path / "c")
    corpus.add_photos(
        [_photo("a", ImageURL("url_l", server.add("/a.jpg", Route(real_jpeg(photos[0], (600, 600))))))]
    )
    fetch_photos(corpus, _settings())
    agent = next(h.headers["user-agent"] for h in server.hits if h.path == "/a.jpg")
    assert agent.startswith("photocorpus/") and "https://github.com/photocorpus/photocorpus" in agent


def test_memory_stays_bounded_by_the_inflight_budget(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    corpus = Corpus.create(tmp_path / "c")
    body = real_jpeg(photos[0], (1024, 1024))
    corpus.add_photos(
        [_photo(str(i), ImageURL("url_l", server.add(f"/{i}.jpg", Route(body)))) for i in range(60)]
    )
    report = fetch_photos(
        corpus, _settings(max_inflight_mb=1, concurrency=32, size="64x64", resize_mode="squash")
    )
    assert report.fetched == 60
    # a body is read only once its Content-Length fits in the 1 MB budget (or nothing else is held)
    assert report.peak_inflight_bytes <= 1_000_000 + len(body)


def test_stored_bytes_are_a_valid_jpeg_of_the_reported_size(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    corpus = Corpus.create(tmp_path / "c")
    [pid] = corpus.add_photos(
        [_photo("x", ImageURL("url_l", server.add("/x.jpg", Route(real_jpeg(photos[5], (900, 700))))))]
    )
    fetch_photos(corpus, _settings(size="256x256", resize_mode="border", jpeg_quality=80))
    row = _file_row(corpus, pid)
    data = corpus.abs_path(row["path"]).read_bytes()
    assert row["bytes"] == len(data) and row["format"] == "JPEG"
    assert Image.open(io.BytesIO(data)).size == (row["width"], row["height"]) == (256, 256)
    assert corpus.photo(pid)["stages"]["fetch"]["status"] == "done"
    assert reasons.is_transient("http_503") and not reasons.is_transient("http_404")


def _with_camera_exif(jpeg: bytes) -> bytes:
    """``jpeg`` re-saved with the EXIF a camera writes into an original (make, model, ISO, date)."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "NIKON CORPORATION", "NIKON D750"
    sub = exif.get_ifd(0x8769)
    sub[0x8827], sub[0x829D], sub[0x9003] = 400, 8.0, "2016:05:01 09:15:00"
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


def test_exif_of_the_original_bytes_is_stored_with_file_origin(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    original = _with_camera_exif(real_jpeg(photos[6], (1600, 1200)))
    corpus = Corpus.create(tmp_path / "c")
    with_exif, without = corpus.add_photos(
        [
            _photo("orig", ImageURL("url_o", server.add("/o.jpg", Route(original)))),
            _photo(
                "plain", ImageURL("url_l", server.add("/l.jpg", Route(real_jpeg(photos[7], (1024, 768)))))
            ),
        ]
    )
    report = fetch_photos(corpus, _settings())
    assert (report.fetched, report.failed) == (2, 0), report.failures
    stored = corpus.abs_path(_file_row(corpus, with_exif)["path"]).read_bytes()
    assert not Image.open(io.BytesIO(stored)).getexif().get(0x010F)  # the re-encoded file has no EXIF
    row = corpus.conn.execute(
        "SELECT make, model, iso, f_number, taken_at, sources FROM photo_exif WHERE photo_id = ?",
        (with_exif,),
    ).fetchone()
    assert tuple(row[:5]) == ("NIKON CORPORATION", "NIKON D750", 400, 8.0, "2016-05-01T09:15:00Z")
    assert set(json.loads(row[5]).values()) == {"file"}
    assert corpus.conn.execute("SELECT 1 FROM photo_exif WHERE photo_id = ?", (without,)).fetchone() is None
    assert corpus.metadata_coverage()["exif"] == 1


def test_limit_visits_that_many_photos_in_id_order_and_a_rerun_the_rest(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    jpeg = real_jpeg(photos[0], (640, 512))
    urls = [server.add(f"/{i}.jpg", Route(jpeg)) for i in range(8)]
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos([_photo(f"p{i}", ImageURL("url_l", url)) for i, url in enumerate(urls)])
    assert ids == sorted(ids)
    # pages of 3, at most 7 ids in all: 3 + 3 + 1, in id order, each with its photos' URLs
    pages = list(pending_pages(corpus, 3, limit=7))
    assert [page for page, _urls in pages] == [ids[0:3], ids[3:6], ids[6:7]]
    assert {pid: [o.url for o in opts] for pid, opts in pages[1][1].items()} == {
        pid: [urls[i]] for i, pid in enumerate(ids) if i in (3, 4, 5)
    }
    # stopping between pages: no further page is read
    seen: list[list[int]] = []
    for page, _urls in pending_pages(corpus, 3, stopping=lambda: bool(seen)):
        seen.append(page)
    assert seen == [ids[0:3]]

    report = fetch_photos(corpus, _settings(), limit=5)
    assert report.visited == 5
    assert [server.requests_to(f"/{i}.jpg") for i in range(8)] == [1] * 5 + [0] * 3
    assert [page for page, _urls in pending_pages(corpus, 3)] == [ids[5:8]]
    report = fetch_photos(corpus, _settings())
    assert report.visited == 3
    assert [server.requests_to(f"/{i}.jpg") for i in range(8)] == [1] * 8
    assert list(pending_pages(corpus, 3)) == []
    assert all(corpus.photo(pid)["stages"]["fetch"]["status"] == "done" for pid in ids)
    corpus.close()


def test_strict_size_policy_takes_large_else_original_else_drops(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    """im2gps: Large, failing that Original, failing that the photo is thrown away (no_allowed_size);
    the default policy, beside it, falls back to the largest other size."""
    large, original = real_jpeg(photos[0], (1024, 768)), real_jpeg(photos[1], (2048, 1536))
    medium, small = real_jpeg(photos[2], (800, 600)), real_jpeg(photos[3], (640, 480))
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos(
        [
            _photo(
                "all_sizes",
                ImageURL("url_z", server.add("/1_z.jpg", Route(small))),
                ImageURL("url_l", server.add("/1_l.jpg", Route(large))),
                ImageURL("url_o", server.add("/1_o.jpg", Route(original))),
            ),
            _photo(
                "original_and_medium",
                ImageURL("url_c", server.add("/2_c.jpg", Route(medium))),
                ImageURL("url_o", server.add("/2_o.jpg", Route(original))),
            ),
            _photo(
                "medium_only",
                ImageURL("url_c", server.add("/3_c.jpg", Route(medium)), 800, 600),
                ImageURL("url_z", server.add("/3_z.jpg", Route(small)), 640, 480),
            ),
            _photo("no_url"),
        ]
    )
    report = fetch_photos(corpus, _settings(size_policy="strict"))
    assert (report.fetched, report.failures) == (2, {"no_allowed_size": 1, "no_url": 1})
    assert _file_row(corpus, ids[0])["origin"].endswith("/1_l.jpg")
    assert _file_row(corpus, ids[1])["origin"].endswith("/2_o.jpg")
    stage = corpus.photo(ids[2])["stages"]["fetch"]
    assert stage["reason"] == reasons.NO_ALLOWED_SIZE == "no_allowed_size"
    assert "url_c, url_z" in stage["detail"] and "url_l, url_o" in stage["detail"]
    assert sum(server.requests_to(p) for p in ("/1_z.jpg", "/2_c.jpg", "/3_c.jpg", "/3_z.jpg")) == 0
    # today's default beside it: the dropped photo comes back as its largest other size
    again = fetch_photos(corpus, _settings(), retry_failed=["no_allowed_size"])
    assert (again.visited, again.fetched) == (1, 1)
    assert _file_row(corpus, ids[2])["origin"].endswith("/3_c.jpg")


def _noise_with_inner_ring(size: int, ring_at: int) -> bytes:
    """A textured image (no frame at its edge) holding one flat black ring ``ring_at`` px in: a frame
    only to im2gps's rule (the widest qualifying ring anywhere), as PNG so the ring stays exactly flat."""
    pixels = np.random.default_rng(7).integers(0, 256, (size, size, 3), dtype=np.uint8)
    far = size - 1 - ring_at
    pixels[ring_at, ring_at : far + 1] = pixels[far, ring_at : far + 1] = 0
    pixels[ring_at : far + 1, ring_at] = pixels[ring_at : far + 1, far] = 0
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_im2gps_preset_applies_the_strict_sizes_and_im2gps_frame_rule(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    """``fetch --im2gps`` on the command line, ``preset="im2gps"`` in Python: one preset, and a setting
    given beside it (``--frame-rule edge``, ``frame_rule="edge"``) wins over the preset's."""
    import photocorpus as pc

    ringed = server.add("/ring_l.jpg", Route(_noise_with_inner_ring(800, 60), content_type="image/png"))
    medium = server.add("/m_c.jpg", Route(real_jpeg(photos[4], (800, 600))))
    wide = server.add("/w_l.jpg", Route(real_jpeg(photos[5], (1024, 576))))  # 16:9, outside 0.625..1.6

    def corpus_dir(name: str) -> Path:
        with Corpus.create(tmp_path / name) as c:
            c.add_photos(
                [
                    _photo("ringed", ImageURL("url_l", ringed)),
                    _photo("medium", ImageURL("url_c", medium)),
                    _photo("wide", ImageURL("url_l", wide)),
                ]
            )
        return tmp_path / name

    runs = {}
    for name, extra in (
        ("default", []),
        ("im2gps", ["--im2gps"]),
        ("im2gps_edge", ["--im2gps", "--frame-rule", "edge"]),
    ):
        out = run_cli(
            "fetch", "-C", str(corpus_dir(name)), "-q", "--allow-private-urls", "--host-rate", "0",
            "--workers", "1", "--json", *extra,
        )  # fmt: skip
        runs[name] = json.loads(out.stdout)
    api_settings = {"allow_private_urls": True, "host_rate_per_s": 0, "workers": 1}
    for name, frame_rule in (("api_im2gps", {}), ("api_im2gps_edge", {"frame_rule": "edge"})):
        report = pc.fetch_photos(corpus_dir(name), preset="im2gps", **api_settings, **frame_rule)
        runs[name] = {"fetched": report.fetched, "frames_removed": report.frames_removed}
        runs[name]["failures"] = report.failures
    assert (runs["default"]["fetched"], runs["default"]["frames_removed"]) == (3, 0)
    for im2gps in ("im2gps", "api_im2gps", "im2gps_edge", "api_im2gps_edge"):
        assert runs[im2gps]["failures"] == {"no_allowed_size": 1, "bad_aspect_ratio": 1}, im2gps
    assert (runs["im2gps"]["fetched"], runs["im2gps"]["frames_removed"]) == (1, 1)  # the inner ring: trimmed
    assert (runs["api_im2gps"]["fetched"], runs["api_im2gps"]["frames_removed"]) == (1, 1)
    assert (runs["im2gps_edge"]["fetched"], runs["im2gps_edge"]["frames_removed"]) == (1, 0)  # option wins
    assert (runs["api_im2gps_edge"]["fetched"], runs["api_im2gps_edge"]["frames_removed"]) == (1, 0)


def test_strict_size_policy_and_default_size_only_are_refused_together() -> None:
    with pytest.raises(ValueError, match="contradict"):
        FetchSettings(size_policy="strict", default_size_only=True)


def test_frame_contiguous_of_an_older_corpus_toml_reads_as_frame_rule(tmp_path: Path) -> None:
    """Every corpus.toml written before ``frame_rule`` says ``frame_contiguous = true``: it must still
    open, with the same rule, and a file saying two different things is refused, not half-read."""
    assert FetchSettings(frame_contiguous=True).frame_rule == "edge"
    assert FetchSettings(frame_contiguous=False).frame_rule == "im2gps"
    Corpus.create(tmp_path / "c").close()
    toml = tmp_path / "c" / "corpus.toml"
    text = toml.read_text()
    assert 'frame_rule = "edge"' in text
    toml.write_text(text.replace('frame_rule = "edge"', "frame_contiguous = false"))
    with Corpus.open(tmp_path / "c") as c:
        assert c.settings.fetch.frame_rule == "im2gps"
    with pytest.raises(ValueError, match="disagree: keep only frame_rule"):
        FetchSettings(frame_contiguous=True, frame_rule="im2gps")


def test_embed_provenance_option_stamps_photos_of_any_source(
    tmp_path: Path, server: ImageServer, photos: list[Path]
) -> None:
    """Flickr photos are stamped by default; ``--embed-provenance`` stamps every source's."""
    jpeg = real_jpeg(photos[8], (800, 600))
    url = server.add("/p.jpg", Route(jpeg))
    stored = {}
    for name, extra in (("default", []), ("stamped", ["--embed-provenance"])):
        with Corpus.create(tmp_path / name) as c:
            c.add_photos([PhotoRecord("urls", "p", ["misc"], title="Pier 17", urls=[ImageURL("url", url)])])
        run_cli(
            "fetch", "-C", str(tmp_path / name), "-q", "--allow-private-urls", "--host-rate", "0",
            "--workers", "1", *extra,
        )  # fmt: skip
        stored[name] = next((tmp_path / name / "images").rglob("*.jpg")).read_bytes()
    assert stored["default"] == jpeg  # not Flickr: stored as downloaded
    with Image.open(io.BytesIO(stored["stamped"])) as im:
        comment = json.loads(im.info["comment"])
    assert (comment["title"], comment["source_url"], comment["image_url"]) == ("Pier 17", url, url)
    assert stored["stamped"].endswith(jpeg[jpeg.index(b"\xff\xda") :])  # spliced, not re-encoded
