"""Provenance inside JPEG files (im2gps wrote every attribute into each file it downloaded): every
attribute comes back through two independent readers (Pillow's XMP and exiftool), hostile text never
breaks the file or the packet, and ``fetch`` stamps every Flickr photo it stores without re-encoding."""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocorpus.catalog_table import iter_catalog_photos
from photocorpus.config import FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.export.training_folders import images_in_order
from photocorpus.fetch.stage import fetch_photos
from photocorpus.flickr_api import FlickrClient
from photocorpus.provenance import Provenance, embed_provenance
from photocorpus.records import ImageURL, PhotoRecord
from photocorpus.sources.flickr import FlickrHarvester, HarvestQuery, SearchFilters
from tests.fixtures.flickr_server import FlickrTestServer, make_population
from tests.helpers import exiftool_tags

FULL = Provenance(
    "flickr",
    "5280931476",
    page_url="https://www.flickr.com/photos/12037949754@N01/5280931476",
    image_url="https://live.staticflickr.com/5204/5280931476_0a1b2c3d4e_b.jpg",
    owner="Ann Møller",
    owner_id="12037949754@N01",
    title="Brooklyn Bridge at dusk",
    description="Taken from the Manhattan side, looking east.",
    tags=["bridge", "brooklyn", "night & day"],
    license="CC BY-SA 2.0",
    lat=-33.856784,
    lon=-151.215297,
    geo_accuracy=16,
    taken_at="2016-05-01T09:15:00Z",
    uploaded_at="2016-05-02T10:00:30Z",
    views=1234,
)


def _jpeg_with_exif(path: Path) -> bytes:
    """A real photo, re-saved with the EXIF a camera writes: the stamp must keep it readable."""
    exif = Image.Exif()
    exif[0x010F] = "FUJIFILM"
    buf = io.BytesIO()
    with Image.open(path) as im:
        im.save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def _pixels(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("RGB"))


def _scan(jpeg: bytes) -> bytes:
    """The entropy-coded image data, from the first start-of-scan marker on."""
    return jpeg[jpeg.index(b"\xff\xda") :]


def _description(jpeg: bytes) -> dict:
    with Image.open(io.BytesIO(jpeg)) as im:
        return im.getxmp()["xmpmeta"]["RDF"]["Description"]


def _alt(value: dict) -> str:
    return value["Alt"]["li"]["text"]


def test_every_attribute_comes_back_through_pillow_and_exiftool_with_the_pixels_untouched(
    instany_images: Path,
) -> None:
    original = _jpeg_with_exif(sorted(instany_images.glob("*.jpg"))[3])
    stamped = embed_provenance(original, FULL)
    assert _scan(stamped) == _scan(original)  # spliced in: not one byte of image data re-encoded
    np.testing.assert_array_equal(_pixels(stamped), _pixels(original))
    with Image.open(io.BytesIO(stamped)) as im:
        assert im.getexif()[0x010F] == "FUJIFILM"  # the camera's EXIF is still where readers look
        comment = json.loads(im.info["comment"])
    d = _description(stamped)
    assert d["source"] == d["WebStatement"] == d["PageURL"] == FULL.page_url
    assert d["identifier"] == "flickr:5280931476" and d["ImageURL"] == FULL.image_url
    assert _alt(d["title"]) == "Brooklyn Bridge at dusk"
    assert _alt(d["description"]) == "Taken from the Manhattan side, looking east."
    assert d["creator"]["Seq"]["li"] == "Ann Møller" and d["OwnerID"] == "12037949754@N01"
    assert _alt(d["rights"]) == "CC BY-SA 2.0"
    assert d["subject"]["Bag"]["li"] == ["bridge", "brooklyn", "night & day"]
    assert d["GPSLatitude"].endswith("S") and d["GPSLongitude"].endswith("W")
    assert d["DateTimeOriginal"] == "2016-05-01T09:15:00Z" and d["UploadDate"] == "2016-05-02T10:00:30Z"
    assert (d["Views"], d["GeoAccuracy"]) == ("1234", "16")

    tags = exiftool_tags(stamped)
    assert "ExifTool:Warning" not in tags, tags.get("ExifTool:Warning")
    assert tags["IFD0:Make"] == "FUJIFILM"
    assert tags["XMP-dc:Title"] == "Brooklyn Bridge at dusk"
    assert tags["XMP-dc:Description"] == "Taken from the Manhattan side, looking east."
    assert tags["XMP-dc:Creator"] == "Ann Møller" and tags["XMP-dc:Rights"] == "CC BY-SA 2.0"
    assert tags["XMP-dc:Subject"] == ["bridge", "brooklyn", "night & day"]
    assert tags["XMP-dc:Source"] == tags["XMP-xmpRights:WebStatement"] == FULL.page_url
    assert tags["XMP-exif:GPSLatitude"] == pytest.approx(-33.856784, abs=1e-6)
    assert tags["XMP-exif:GPSLongitude"] == pytest.approx(-151.215297, abs=1e-6)
    assert tags["XMP-exif:DateTimeOriginal"] == "2016:05:01 09:15:00Z"
    assert tags["XMP-photocorpus:UploadDate"] == "2016:05:02 10:00:30Z"
    assert tags["XMP-photocorpus:Views"] == 1234 and tags["XMP-photocorpus:ImageURL"] == FULL.image_url
    assert (
        json.loads(tags["File:Comment"])
        == comment
        == {
            "source": "flickr",
            "source_id": "5280931476",
            "source_url": FULL.page_url,
            "page_url": FULL.page_url,
            "image_url": FULL.image_url,
            "owner": "Ann Møller",
            "owner_id": "12037949754@N01",
            "title": "Brooklyn Bridge at dusk",
            "description": "Taken from the Manhattan side, looking east.",
            "tags": ["bridge", "brooklyn", "night & day"],
            "license": "CC BY-SA 2.0",
            "lat": -33.856784,
            "lon": -151.215297,
            "geo_accuracy": 16,
            "taken_at": "2016-05-01T09:15:00Z",
            "uploaded_at": "2016-05-02T10:00:30Z",
            "views": 1234,
        }
    )


# Outside XML 1.0's Char production, or a C1 control it discourages: written out here independently
# of the code under test.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@pytest.mark.parametrize(
    "title",
    [
        "</rdf:Description></rdf:RDF></x:xmpmeta>",
        '<?xpacket end="w"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>',
        "]]><![CDATA[ & &amp; &#0; \"quoted\" 'single' <b>",
        "bell\x07 nul\x00 esc\x1b del\x7f c1\x85 form\x0c lone\ud800surrogate \ufffe end",
        "é" * 10_000,  # a 10 kB title (20 kB in UTF-8) comes back whole
        "<&>" * 30_000,  # escaping multiplies it past the 64 KiB segment: clipped, never broken
    ],
    ids=["close_xmpmeta", "xpacket", "cdata_entities", "control_chars", "10kB", "escape_bomb"],
)
def test_hostile_text_never_breaks_the_jpeg_or_the_xmp(instany_images: Path, title: str) -> None:
    original = sorted(instany_images.glob("*.jpg"))[0].read_bytes()
    hostile = Provenance(
        "flickr", "1", page_url="https://example.org/p/1?a=1&b=<2>", owner=title[:200], title=title,
        description=title[:2000], tags=[title[:20], "ok"] * 300, license=title[:200],
    )  # fmt: skip
    stamped = embed_provenance(original, hostile)
    np.testing.assert_array_equal(_pixels(stamped), _pixels(original))
    expected = _NOT_XML_CHAR.sub("", title)
    for read in (_alt(_description(stamped)["title"]), exiftool_tags(stamped)["XMP-dc:Title"]):
        # whole, or clipped to a prefix marked with an ellipsis: never other text, never a parse error
        assert read == expected or (read.endswith("…") and expected.startswith(read[:-1])), read[:80]
    if len(title) == 10_000:
        assert _alt(_description(stamped)["title"]) == title
    tags = exiftool_tags(stamped)
    assert "ExifTool:Warning" not in tags and "ExifTool:Error" not in tags
    assert tags["XMP-dc:Source"] == "https://example.org/p/1?a=1&b=<2>"
    assert json.loads(tags["File:Comment"])["source_url"] == "https://example.org/p/1?a=1&b=<2>"
    twice = embed_provenance(stamped, hostile)
    assert twice == stamped  # deterministic, and re-stamping replaces instead of stacking


# ---------------------------------------------------------------------------------------------- fetch
START = datetime(2016, 1, 1, tzinfo=UTC)


def _settings(**changes: object) -> FetchSettings:
    base = {"allow_private_urls": True, "host_rate_per_s": 0, "min_side_px": 0, "workers": 1}
    return FetchSettings.model_validate({**base, **changes})


def _harvested_corpus(path: Path, server: FlickrTestServer) -> Corpus:
    corpus = Corpus.create(path)
    with FlickrClient(server.config.api_key, api_url=server.api_url, calls_per_hour=3.6e9) as client:
        filters = SearchFilters(
            min_upload=int(datetime(2015, 12, 1, tzinfo=UTC).timestamp()),
            max_upload=int(datetime(2018, 1, 1, tzinfo=UTC).timestamp()),
        )
        FlickrHarvester(corpus, client, filters).run([HarvestQuery("cat", "cat")])
    return corpus


def test_fetch_stamps_every_flickr_photo_it_stores_and_export_stamps_the_rest(
    tmp_path: Path, instany_images: Path
) -> None:
    truth = make_population(6, years=1, seed=3, start=START, bursty=False)
    originals = [p.read_bytes() for p in sorted(instany_images.glob("*.jpg"))[10:16]]
    for photo, jpeg in zip(truth, originals, strict=True):
        photo.image = jpeg  # 300x300 JPEGs: stored as they are (no resize), so any change is the stamp
    assert any(p.accuracy for p in truth) and not all(p.accuracy for p in truth)
    with FlickrTestServer(truth) as server:
        corpus = _harvested_corpus(tmp_path / "c", server)
        [other] = corpus.add_photos(  # a photo of another source, same bytes: not stamped by default
            [
                PhotoRecord(
                    "urls",
                    "x",
                    ["misc"],
                    urls=[ImageURL("url", f"{server.base_url}/img/{truth[0].id}_z.jpg")],
                )
            ]
        )
        report = fetch_photos(corpus, _settings())
        plain = _harvested_corpus(tmp_path / "plain", server)
        assert fetch_photos(plain, _settings(embed_provenance=[])).fetched == 6
    assert (report.fetched, report.failed) == (7, 0), report.failures
    by_source_id = {
        row["source_id"]: int(row["id"]) for row in corpus.conn.execute("SELECT id, source_id FROM photos")
    }
    for photo, original in zip(truth, originals, strict=True):
        row = corpus.photo(by_source_id[photo.id])
        stored = corpus.abs_path(row["file"]["path"]).read_bytes()
        # the catalog keeps the sha256 of the original downloaded bytes; bytes is the stored file's size
        assert (
            row["file"]["sha256"]
            == hashlib.sha256(original).hexdigest()
            != hashlib.sha256(stored).hexdigest()
        )
        assert row["file"]["bytes"] == len(stored) > len(original)
        assert _scan(stored) == _scan(original)  # not re-encoded
        d = _description(stored)
        assert _alt(d["title"]) == photo.title and d["creator"]["Seq"]["li"] == photo.ownername
        assert _alt(d["rights"]) == row["license"] and row["license"]
        subject = d["subject"]["Bag"]["li"]  # Pillow gives one item as a string, several as a list
        assert (subject if isinstance(subject, list) else [subject]) == list(photo.tags)
        assert d["source"] == f"https://www.flickr.com/photos/{photo.owner}/{photo.id}"
        assert d["ImageURL"] == row["file"]["origin"] and d["ImageURL"].startswith(server.base_url + "/img/")
        assert d["Views"] == "12" and d["OwnerID"] == photo.owner
        assert d["UploadDate"] == datetime.fromtimestamp(photo.dateupload, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert d["DateTimeOriginal"] == photo.datetaken.replace(" ", "T") + "Z"
        assert _alt(d["description"]) == f'A {" & ".join(sorted(photo.words))} photo "{truth.index(photo)}"'
        tags = exiftool_tags(stored)
        assert tags["XMP-dc:Title"] == photo.title and json.loads(tags["File:Comment"])["views"] == 12
        if photo.accuracy:
            assert tags["XMP-exif:GPSLatitude"] == pytest.approx(photo.lat, abs=1e-6)
            assert tags["XMP-exif:GPSLongitude"] == pytest.approx(photo.lon, abs=1e-6)
            assert tags["XMP-photocorpus:GeoAccuracy"] == photo.accuracy
        else:
            assert "XMP-exif:GPSLatitude" not in tags
        unstamped = plain.abs_path(plain.photo(by_source_id[photo.id])["file"]["path"]).read_bytes()
        assert unstamped == original  # embed_provenance = []: the original bytes, untouched
    assert corpus.abs_path(corpus.photo(other)["file"]["path"]).read_bytes() == originals[0]
    assert corpus.verify().ok

    # export --embed-provenance stamps the same attributes (geo, dates and views included) into files
    # that fetch did not stamp
    exported = dict(
        (p.source_id, data)
        for p, data in images_in_order(
            plain, list(iter_catalog_photos(plain, with_file=True)), None, 1, provenance=True
        )
    )
    for photo in truth:
        d = _description(exported[photo.id])
        assert d["Views"] == "12" and "UploadDate" in d and "DateTimeOriginal" in d
        assert ("GPSLatitude" in d) == bool(photo.accuracy)
    corpus.close()
    plain.close()


def test_a_missing_exiftool_fails_in_ci_and_skips_only_outside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """exiftool is the second, independent reader of every stamp: CI (PHOTOCORPUS_REQUIRE_DATA=1) must
    fail without it rather than pass having read nothing, as the browser tests do without chromium."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PHOTOCORPUS_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match=r"exiftool is needed .*scripts/install-browser"):
        exiftool_tags(b"\xff\xd8\xff\xd9")
    monkeypatch.delenv("PHOTOCORPUS_REQUIRE_DATA")
    with pytest.raises(pytest.skip.Exception, match="libimage-exiftool-perl"):
        exiftool_tags(b"\xff\xd8\xff\xd9")
