"""Folder import on real photos: plain folders, the InstaCities1M layout, MIRFLICKR, bad files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from photocorpus.corpus import Corpus
from photocorpus.importing import import_folder
from photocorpus.sources.folder import detect_layout
from tests.helpers import catalog_dump, files_on_disk


@pytest.fixture()
def corpus(tmp_path: Path):
    c = Corpus.create(tmp_path / "corpus")
    yield c
    c.close()


def test_instany100k_imports_3007_photos_and_reimport_changes_nothing(
    corpus: Corpus, instany_images: Path
) -> None:
    expected = sorted(p.stem for p in instany_images.glob("*.jpg"))
    report = import_folder(corpus, instany_images, workers=2)
    assert report.imported == len(expected) == 3007
    assert report.failed == 0
    assert corpus.count_photos() == 3007
    ids = sorted(r[0] for r in corpus.conn.execute("SELECT source_id FROM photos"))
    assert ids == expected
    row = corpus.conn.execute(
        "SELECT f.width, f.height, f.format, f.sha256, f.path FROM files f JOIN photos p ON p.id = f.photo_id"
        " WHERE p.source_id = ?",
        (expected[0],),
    ).fetchone()
    original = instany_images / f"{expected[0]}.jpg"
    with Image.open(original) as im:
        assert (row[0], row[1], row[2]) == (*im.size, "JPEG")
    import hashlib

    assert row[3] == hashlib.sha256(original.read_bytes()).hexdigest()
    assert (corpus.root / row[4]).read_bytes() == original.read_bytes()
    # at most 1000 files per folder
    per_folder: dict[str, int] = {}
    for path in files_on_disk(corpus.root):
        per_folder[path.rsplit("/", 1)[0]] = per_folder.get(path.rsplit("/", 1)[0], 0) + 1
    assert max(per_folder.values()) == 1000 and len(per_folder) == 4

    before_rows = catalog_dump(corpus.root)
    before_files = {p: (corpus.root / p).stat().st_mtime_ns for p in files_on_disk(corpus.root)}
    again = import_folder(corpus, instany_images, workers=2)
    assert again.imported == 0 and again.skipped_existing == 3007
    assert corpus.count_photos() == 3007
    assert catalog_dump(corpus.root) == before_rows
    after_files = {p: (corpus.root / p).stat().st_mtime_ns for p in files_on_disk(corpus.root)}
    assert after_files == before_files
    assert corpus.verify().ok


def _build_instacities(root: Path, photos: list[Path], cities: list[str]) -> dict[str, tuple[str, str]]:
    """InstaCities1M layout: img_resized/<city>/<id>.jpg and captions_resized/<city>/<id>.txt."""
    truth = {}
    for i, photo in enumerate(photos):
        city = cities[i % len(cities)]
        img_dir = root / "img_resized" / city
        cap_dir = root / "captions_resized" / city
        img_dir.mkdir(parents=True, exist_ok=True)
        cap_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, img_dir / photo.name)
        caption = f"Day {i} in {city} ❤️ &amp; more #{city} #Travel #photo{i % 3}"
        if i % 7 != 0:  # some photos have no caption file, as in the real dataset
            (cap_dir / f"{photo.stem}.txt").write_text(caption, encoding="utf-8")
            truth[photo.stem] = (city, caption)
        else:
            truth[photo.stem] = (city, None)
    return truth


def test_instacities_layout_records_city_and_caption(
    corpus: Corpus, instany_images: Path, tmp_path: Path
) -> None:
    photos = sorted(instany_images.glob("*.jpg"))[:60]
    cities = ["london", "newyork", "sydney"]
    src = tmp_path / "InstaCities1M"
    truth = _build_instacities(src, photos, cities)
    assert detect_layout(src) == "instacities"
    report = import_folder(corpus, src, workers=1)
    assert report.imported == 60
    rows = corpus.conn.execute(
        "SELECT source, source_id, primary_label, caption, hashtags FROM photos"
    ).fetchall()
    assert len(rows) == 60
    for source, source_id, label, caption, hashtags in rows:
        city, expected_caption = truth[source_id]
        assert source == "instagram"
        assert label == city
        assert caption == expected_caption
        if expected_caption:
            assert json.loads(hashtags)[:2] == [city, "travel"]
    assert corpus.status_summary()["labels"] == {"london": 20, "newyork": 20, "sydney": 20}
    paths = [r[0] for r in corpus.conn.execute("SELECT path FROM files")]
    assert all(p.split("/")[1] in cities for p in paths)


def test_mirflickr_layout_reads_tags(corpus: Corpus, mirflickr_images: Path, tmp_path: Path) -> None:
    src = tmp_path / "mirflickr"
    (src / "meta" / "tags").mkdir(parents=True)
    originals = sorted(mirflickr_images.glob("im*.jpg"))[:3]  # any three real MIRFLICKR photos
    for n, original in zip((1, 2, 10), originals, strict=True):
        shutil.copy(original, src / f"im{n}.jpg")
    (src / "meta" / "tags" / "tags2.txt").write_text("sky\r\nclouds\r\n", encoding="utf-8")
    assert detect_layout(src) == "mirflickr"
    import_folder(corpus, src, workers=1)
    rows = dict(
        corpus.conn.execute("SELECT source_id, tags FROM photos WHERE source = 'mirflickr'").fetchall()
    )
    assert set(rows) == {"1", "2", "10"}
    assert json.loads(rows["2"]) == ["sky", "clouds"]
    assert json.loads(rows["1"]) == []


def test_mirflickr_named_photos_keep_their_caption_sidecars(
    corpus: Corpus, mirflickr_images: Path, tmp_path: Path
) -> None:
    """im<N>.jpg with <name>.txt captions beside them: still MIRFLICKR photo N (so labels.csv and .dat
    files find them), and every caption kept, as a plain folder would keep it."""
    src = tmp_path / "captioned"
    src.mkdir()
    captions = {1: "A red dress #fashion", 7: "Smoke\nand mirrors", 12: None}
    for n, original in zip(captions, sorted(mirflickr_images.glob("im*.jpg"))[:3], strict=True):
        shutil.copy(original, src / f"im{n}.jpg")
        if captions[n] is not None:
            (src / f"im{n}.txt").write_text(captions[n] + "\n", encoding="utf-8")
    (src / "im7.json").write_text(json.dumps({"title": "Mirrors", "tags": ["smoke"]}), encoding="utf-8")
    assert detect_layout(src) == "mirflickr"
    report = import_folder(corpus, src, workers=1)
    assert report.layout == "mirflickr" and report.imported == 3
    rows = {
        r["source_id"]: r
        for r in corpus.conn.execute("SELECT source, source_id, caption, title, tags, hashtags FROM photos")
    }
    assert set(rows) == {"1", "7", "12"} and {r["source"] for r in rows.values()} == {"mirflickr"}
    assert rows["1"]["caption"] == "A red dress #fashion" and json.loads(rows["1"]["hashtags"]) == ["fashion"]
    assert rows["7"]["caption"] == "Smoke\nand mirrors" and rows["7"]["title"] == "Mirrors"
    assert json.loads(rows["7"]["tags"]) == ["smoke"]
    assert rows["12"]["caption"] is None


def test_bad_files_are_recorded_with_distinct_reasons(
    corpus: Corpus, instany_images: Path, tmp_path: Path
) -> None:
    src = tmp_path / "mixed"
    src.mkdir()
    good = sorted(instany_images.glob("*.jpg"))[:5]
    for p in good:
        shutil.copy(p, src / p.name)
    data = good[0].read_bytes()
    (src / "corrupt.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    (src / "zero.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("this is not a picture\n")
    unreadable = src / "unreadable.jpg"
    shutil.copy(good[1], unreadable)
    unreadable.chmod(0)
    report = import_folder(corpus, src, workers=2)
    reasons = {
        r[0]: r[1]
        for r in corpus.conn.execute(
            "SELECT p.source_id, s.reason FROM stages s JOIN photos p ON p.id = s.photo_id"
            " WHERE s.status = 'failed'"
        )
    }
    expected = {"corrupt": "corrupt_image", "zero": "empty_file", "text": "not_an_image"}
    if os.geteuid() != 0:  # root reads anything, so only a normal user sees the permission failure
        expected["unreadable"] = "read_error"
    for name, reason in expected.items():
        assert reasons[name] == reason
    assert report.imported == len(good) + (1 if os.geteuid() == 0 else 0)
    summary = corpus.status_summary()
    assert summary["failures"]["corrupt_image"] == 1
    assert summary["failures"]["empty_file"] == 1
    assert summary["failures"]["not_an_image"] == 1
    assert corpus.verify().ok


def test_plain_folder_sidecars_and_label_override(
    corpus: Corpus, instany_images: Path, tmp_path: Path
) -> None:
    src = tmp_path / "mine" / "beach"
    src.mkdir(parents=True)
    photos = sorted(instany_images.glob("*.jpg"))[:3]
    for p in photos:
        shutil.copy(p, src / p.name)
    first = photos[0].stem
    (src / f"{first}.txt").write_text("Sunset at the beach #Sunset #beach", encoding="utf-8")
    meta = {
        "title": "<b>Sunset</b>",
        "owner": "alice",
        "lat": "40.5",
        "lon": -73.9,
        "tags": ["sea", "sun"],
        "taken_at": "2016-08-01 18:30:00",
        "license": "CC BY 2.0",
        "camera": "X100",
    }
    (src / f"{first}.json").write_text(json.dumps(meta), encoding="utf-8")
    (src / f"{photos[1].stem}.json").write_text("{not json", encoding="utf-8")
    import_folder(corpus, src.parent, workers=1)
    pid = corpus.photo_ids("folder", [f"beach/{first}"])[f"beach/{first}"]
    photo = corpus.photo(pid)
    assert photo["labels"] == ["beach"]
    assert photo["caption"] == "Sunset at the beach #Sunset #beach"
    assert photo["hashtags"] == ["sunset", "beach"]
    assert photo["title"] == "<b>Sunset</b>"  # raw text is kept; escaping is the report's job
    assert (photo["lat"], photo["lon"], photo["owner"]) == (40.5, -73.9, "alice")
    assert photo["taken_at"] == "2016-08-01T18:30:00Z"
    assert photo["extra"]["metadata"] == {"camera": "X100"}
    broken = corpus.photo(corpus.photo_ids("folder", [f"beach/{photos[1].stem}"])[f"beach/{photos[1].stem}"])
    assert broken["stages"]["fetch"]["status"] == "done"  # a bad sidecar never rejects the photo
    assert "json sidecar" in broken["extra"]["sidecar_warnings"][0]

    other = Corpus.create(tmp_path / "other")
    import_folder(other, src, label="holiday", workers=1)
    assert other.status_summary()["labels"] == {"holiday": 3}
    other.close()


def test_link_mode_hardlinks_instead_of_copying(corpus: Corpus, instany_images: Path, tmp_path: Path) -> None:
    src = tmp_path / "linkme"
    src.mkdir()
    photos = sorted(instany_images.glob("*.jpg"))[:4]
    for p in photos:
        shutil.copy(p, src / p.name)
    import_folder(corpus, src, link=True, workers=1)
    for rel in files_on_disk(corpus.root):
        stored = corpus.root / rel
        assert os.path.samefile(stored, src / stored.name)
    assert corpus.verify().ok
