"""Every export format, written from a curated corpus of real photos and read back independently."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from photocorpus.config import CurateSettings
from photocorpus.corpus import Corpus, StoredFile
from photocorpus.curate.bots import run_bots
from photocorpus.curate.captions import run_captions
from photocorpus.curate.dedup import run_dedup
from photocorpus.curate.quality import run_quality
from photocorpus.curate.splits import run_splits
from photocorpus.export.mirflickr_json import export_mirflickr_json
from photocorpus.export.parquet import export_parquet
from photocorpus.export.rows import ExportError, parse_size, parse_splits
from photocorpus.export.training_folders import export_imagefolder, export_instacities
from photocorpus.export.webdataset import export_webdataset
from photocorpus.importing import import_folder
from photocorpus.records import PhotoRecord

WORDS = ["bridge", "ferry", "subway", "pizza", "bagel", "skyline", "park", "museum", "harbor", "rooftop"]


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Path:
    """30 real photos in two labels with sidecars (CC and not), an exact duplicate, a PNG, and a photo
    whose source id and label try to escape the export folder."""
    root = tmp_path_factory.mktemp("export")
    src = root / "src"
    photos = sorted(instany_images.glob("*.jpg"))[300:330]
    for i, p in enumerate(photos):
        label = "brooklyn" if i % 2 else "queens"
        (src / label).mkdir(parents=True, exist_ok=True)
        (src / label / p.name).write_bytes(p.read_bytes())
        meta = {
            "title": f"Photo <b>{i}</b> &amp; friends",
            "owner": f"owner{i % 5}",
            "license": "CC BY 2.0" if i % 3 == 0 else "All Rights Reserved",
            "page_url": f"https://www.flickr.com/photos/owner{i % 5}/{p.stem}",
            "caption": f"{WORDS[i % len(WORDS)]} {WORDS[(3 * i + 1) % len(WORDS)]} in NYC 😍 see "
            f"https://example.org/{i} #nyc #{WORDS[(7 * i + 2) % len(WORDS)]}",
        }
        (src / label / f"{p.stem}.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.copy(photos[0], src / "queens" / "exact-copy.jpg")  # an exact duplicate
    Image.open(photos[1]).save(src / "brooklyn" / "as-png.png")  # a non-JPEG that exports re-encode
    corpus_dir = root / "corpus"
    with Corpus.create(corpus_dir) as corpus:
        import_folder(corpus, src, workers=1)
        evil = corpus.add_photos([PhotoRecord("evil", "../../outside", ["../../etc"], license="CC0 1.0")])[0]
        rel = corpus.plan_image_path(evil, "JPEG")
        corpus.abs_path(rel).parent.mkdir(parents=True, exist_ok=True)
        # A photo of its own (not a copy of an imported one), so that dedup keeps it in a split.
        own = sorted(instany_images.glob("*.jpg"))[330]
        shutil.copy(own, corpus.abs_path(rel))
        with Image.open(own) as im:
            w, h = im.size
        sha = hashlib.sha256(own.read_bytes()).hexdigest()
        corpus.commit_file(evil, StoredFile(rel, sha, w, h, own.stat().st_size, "JPEG"))
        settings = CurateSettings(semantic=False)
        run_dedup(corpus, settings, workers=1)
        run_captions(corpus)
        run_bots(corpus, settings)
        run_quality(corpus, settings, workers=1)
        run_splits(corpus, settings)
    return corpus_dir


def _db(corpus_dir: Path) -> dict[str, dict]:
    with Corpus.open(corpus_dir) as corpus:
        return {
            r["source_id"]: dict(r)
            for r in corpus.conn.execute(
                "SELECT p.id, p.source, p.source_id, p.primary_label, p.license, p.title, p.owner, "
                "p.page_url, "
                "c.split, c.caption_clean, c.duplicate_of, c.quality_flags FROM photos p "
                "LEFT JOIN curation c ON c.photo_id = p.id"
            )
        }


def _inside(root: Path) -> None:
    resolved = root.resolve()
    for path in root.rglob("*"):
        assert resolved in path.resolve().parents


def test_instacities_layout_and_split_lists(curated: Path, tmp_path: Path) -> None:
    db = _db(curated)
    out = tmp_path / "ic"
    with Corpus.open(curated) as corpus:
        report = export_instacities(corpus, out, size=(64, 64), workers=1)
    in_split = {k: v for k, v in db.items() if v["split"]}
    assert report.images == len(in_split) > 20
    listed = {}
    for split in ("train", "val", "test"):
        for line in (out / f"{split}.txt").read_text().splitlines():
            listed[line] = split
    assert len(listed) == len(in_split)
    for entry, split in listed.items():
        label, stem = entry.split("/")
        with Image.open(out / "img_resized" / label / f"{stem}.jpg") as im:
            assert im.size == (64, 64) and im.format == "JPEG"
        caption = (out / "captions" / label / f"{stem}.txt").read_text(encoding="utf-8").strip()
        matches = [v for v in in_split.values() if v["caption_clean"] == caption and v["split"] == split]
        assert matches, (entry, caption)
    assert "https://" not in (out / "captions").rglob("*.txt").__next__().read_text()
    _inside(out)
    # CC photos in the export are credited
    rows = list(csv.DictReader((out / "attribution.csv").open(encoding="utf-8")))
    cc = {k for k, v in in_split.items() if v["license"] and v["license"].startswith("CC")}
    assert {r["source_id"] for r in rows} == cc


def test_imagefolder_keeps_stored_bytes_and_filters_splits(curated: Path, tmp_path: Path) -> None:
    db = _db(curated)
    out = tmp_path / "if"
    with Corpus.open(curated) as corpus:
        report = export_imagefolder(corpus, out, splits={"train", "test"}, workers=1)
    files = sorted(out.rglob("*.jpg"))
    expected = [v for v in db.values() if v["split"] in ("train", "test")]
    assert report.images == len(files) == len(expected)
    assert {f.relative_to(out).parts[0] for f in files} == {"train", "test"}
    for f in files:
        _split, label, _name = f.relative_to(out).parts
        assert label in ("brooklyn", "queens") or (label.startswith("etc-") and ".." not in label)
        with Image.open(f) as im:
            im.load()
    _inside(out)


def test_webdataset_reads_back_with_the_webdataset_library(curated: Path, tmp_path: Path) -> None:
    db = _db(curated)
    out = tmp_path / "wds"
    with Corpus.open(curated) as corpus:
        report = export_webdataset(corpus, out, size=(96, 96), samples_per_shard=8, workers=1)
    assert report.samples == sum(1 for v in db.values() if v["split"])
    assert len(report.shards) >= 3 and all(name.endswith(".tar") for name in report.shards)
    seen = 0
    for shard in sorted(out.glob("*.tar")):
        for sample in wds.WebDataset(str(shard), shardshuffle=False).decode("pil"):
            meta = sample["json"]
            row = db[meta["source_id"]]
            assert shard.name.startswith(row["split"])
            assert meta["split"] == row["split"] and meta["label"] == row["primary_label"]
            assert sample["txt"] == row["caption_clean"]
            assert sample["jpg"].size == (96, 96)
            seen += 1
    assert seen == report.samples


def test_parquet_one_row_per_photo_with_the_documented_columns(curated: Path, tmp_path: Path) -> None:
    db = _db(curated)
    out = tmp_path / "meta.parquet"
    with Corpus.open(curated) as corpus:
        assert export_parquet(corpus, out) == len(db)
    table = pq.read_table(out)
    for column in ("source", "source_id", "label", "caption", "duplicate_of", "split", "quality_flags",
                   "width", "height", "path"):  # fmt: skip
        assert column in table.column_names
    flags_type = table.schema.field("quality_flags").type
    assert pa.types.is_list(flags_type) and pa.types.is_string(flags_type.value_type)
    rows = {r["source_id"]: r for r in table.to_pylist()}
    assert set(rows) == set(db)
    by_id = {v["id"]: k for k, v in db.items()}
    dups = 0
    for sid, row in rows.items():
        ref = db[sid]
        assert row["split"] == ref["split"]
        assert row["quality_flags"] == json.loads(ref["quality_flags"] or "[]")
        if ref["duplicate_of"] is not None:
            dups += 1
            assert row["duplicate_of"] == by_id[ref["duplicate_of"]] and row["split"] is None
        else:
            assert row["duplicate_of"] is None
    assert dups >= 1  # the exact copy
    assert rows["brooklyn/as-png"]["width"] == 300 and rows["brooklyn/as-png"]["path"].endswith(".png")
    assert pq.read_schema(out).metadata[b"photocorpus.corpus_root"] == str(curated).encode()


def test_mirflickr_json_names_files_by_catalog_id_and_uses_the_s16a_fields(
    curated: Path, tmp_path: Path
) -> None:
    """No MIRFLICKR photo here: each file is <id // 10000>/p<id>.json by catalog id (so a photo's file
    never depends on the others), with the s16a page's nine field names."""
    db = _db(curated)
    out = tmp_path / "mf"
    with Corpus.open(curated) as corpus:
        assert export_mirflickr_json(corpus, out) == len(db)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert files == sorted(f"{v['id'] // 10000}/p{v['id']}.json" for v in db.values())
    records = [json.loads(p.read_text(encoding="utf-8")) for p in out.rglob("*.json")]
    assert {r["source_id"] for r in records} == set(db)
    seed = ["title", "description", "tags", "exif_data", "geo_information", "album_allocation",
            "user_comments", "notes", "group_allocation"]  # fmt: skip
    for record in records:
        assert all(key in record for key in seed)
        assert "caption_raw" not in record and "lat" not in record and "enriched" not in record
        assert record["title"] == db[record["source_id"]]["title"]
    _inside(out)


def test_cli_export_and_bad_arguments(curated: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    proc = run_cli("export", "attribution", str(tmp_path / "att"), "--corpus", str(curated), "--quiet")
    assert "attributed" in proc.stdout
    text = (tmp_path / "att" / "ATTRIBUTION.txt").read_text(encoding="utf-8")
    assert '"Photo 0 & friends" by owner0, CC BY 2.0, https://www.flickr.com/photos/owner0/' in text
    assert "<b>" not in text and "All Rights Reserved" not in text
    args = ("export", "parquet", str(tmp_path / "x.parquet"), "--corpus", str(curated), "--split", "dev")
    bad = run_cli(*args, check=False)
    assert bad.returncode == 2 and "unknown split dev" in bad.stderr and "Traceback" not in bad.stderr
    with pytest.raises(ExportError, match="300x300"):
        parse_size("300 by 300")
    assert parse_splits(["train,val"]) == {"train", "val"} and parse_splits(["all"]) is None


def test_a_hostile_label_and_id_stay_inside_every_export(curated: Path, tmp_path: Path) -> None:
    """The fixture's photo labelled ``../../etc`` with source id ``../../outside`` is exported by every
    folder format (all splits), and nothing any export writes lands outside its own folder: each export
    goes two levels deep into ``tmp_path``, so a ``..`` that survived would surface beside it."""
    db = _db(curated)
    assert db["../../outside"]["split"], "the hostile photo must be in a split for this test to mean anything"
    outs = {name: tmp_path / "a" / "b" / name for name in ("ic", "if", "wds", "mf")}
    with Corpus.open(curated) as corpus:
        export_instacities(corpus, outs["ic"], size=(32, 32), workers=1)
        export_imagefolder(corpus, outs["if"], workers=1)
        export_webdataset(corpus, outs["wds"], size=(32, 32), samples_per_shard=8, workers=1)
        export_mirflickr_json(corpus, outs["mf"])
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert any(out in path.parents for out in outs.values()), f"written outside its export: {path}"
    for out in outs.values():
        _inside(out)
    # The hostile photo was exported, under a sanitised label folder of its own.
    hostile_folders = {p.parent.name for p in (outs["if"]).rglob("*.jpg") if "etc" in p.parent.name}
    assert len(hostile_folders) == 1
    (folder,) = hostile_folders
    assert folder != "etc" and ".." not in folder and "/" not in folder
    assert any("etc" in p.parent.name for p in (outs["ic"] / "img_resized").rglob("*.jpg"))
