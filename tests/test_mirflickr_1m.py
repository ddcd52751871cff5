"""MIRFLICKR-1M's layout and its s16a exchange: images/<N // 10000>/<N>.jpg, the .dat features and the
JSON metadata, imported and exported under one chunking rule and the s16a page's field names.

The ``.dat`` files here are written and read with the s16a page's own logic, re-implemented from its
text (``load_caffe_fc7fc8``: ``struct.unpack('=q', ...)`` for each length, ``'={n}f'`` for each
vector, fc8 first), never with photocorpus's reader or writer: the round trip must agree with the
release's format, not merely with itself.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from photocorpus import feature_store
from photocorpus.corpus import Corpus
from photocorpus.export.mirflickr_images import export_mirflickr_images
from photocorpus.export.mirflickr_json import export_mirflickr_json
from photocorpus.features.exchange import export_mirflickr, import_mirflickr
from photocorpus.importing import import_folder
from photocorpus.sources.folder import detect_layout
from tests.conftest import run_cli

# Photo numbers over several chunks, both edges of a chunk included (9999 | 10000) and the 1M's last.
NUMBERS = [
    0, 5, 17, 812, 9999, 10000, 10081, 10082, 19999, 20000, 103169, 103170, 104000, 250001, 250002,
    499999, 500000, 614333, 777777, 800000, 900001, 999997, 999998, 999999,
]  # fmt: skip
# The s16a page's nine metadata types, as it names them, and the key each has in a JSON file.
SEED_KEYS = {
    "title": "title", "description": "description", "tags": "tags", "EXIF data": "exif_data",
    "geo information": "geo_information", "album allocation": "album_allocation",
    "user comments": "user_comments", "notes": "notes", "group allocation": "group_allocation",
}  # fmt: skip


# ------------------------------------------------------------------------------ the s16a page's .dat logic
def seed_write_dat(path: Path, fc7: list[float], fc8: list[float]) -> None:
    """The inverse of the page's reader: '=q' length, '=<n>f' values, fc8 first, then fc7."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        struct.pack("=q", len(fc8)) + struct.pack(f"={len(fc8)}f", *fc8)
        + struct.pack("=q", len(fc7)) + struct.pack(f"={len(fc7)}f", *fc7)
    )  # fmt: skip


def seed_load_dat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``load_caffe_fc7fc8`` from the s16a page, line for line: returns (fc7, fc8) as 1xN matrices."""
    with open(path, "rb") as f:
        fc8_dims = struct.unpack("=q", f.read(8))[0]
        assert fc8_dims == 1000
        fc8_data = list(struct.unpack(f"={fc8_dims}f", bytearray(f.read(fc8_dims * 4))))
        fc7_dims = struct.unpack("=q", f.read(8))[0]
        fc7_data = list(struct.unpack(f"={fc7_dims}f", bytearray(f.read(fc7_dims * 4))))
        return np.asarray(fc7_data).reshape(1, fc7_dims), np.asarray(fc8_data).reshape(1, fc8_dims)


# -------------------------------------------------------------------------------------- the 1M test tree
def _s16a_record(i: int, n: int) -> dict:
    """One photo's s16a JSON, every kind present; some photos have none of a kind, as in the release."""
    exif = None
    if i % 3 != 2:
        exif = {"make": "Canon", "model": f"Canon EOS {300 + i}D", "focal_length_mm": 18.0 + i,
                "exposure_s": 1 / (60 + i), "f_number": 5.6, "iso": 100 * (1 + i % 4),
                "taken_at": f"2008-04-{1 + i % 28:02d}T21:06:26Z"}  # fmt: skip
        if i % 2:
            del exif["focal_length_mm"]
        exif["sources"] = {column: "api" for column in exif}
    return {
        "title": f"Photo {n} ✓ & <b>friends</b>" if i % 5 else None,
        "description": f"Line one of {n}\nline two, café" if i % 4 else None,
        "tags": [f"tag{n % 7}", "sky", f"ünï{i}"] if i % 6 else [],
        "exif_data": exif,
        "geo_information": (
            {"latitude": 52.0 + i / 100, "longitude": -4.5 + i / 7, "accuracy": 16 - i % 5} if i % 2 else None
        ),
        "album_allocation": [{"id": f"7215760{i}{k}", "title": f"Album {k}"} for k in range(i % 3)],
        "user_comments": [
            {
                "id": f"{n}-c{k}",
                "author": f"{k}@N0{k}",
                "authorname": f"fan {k}",
                "created_at": f"2009-0{1 + k}-02T03:04:05Z",
                "text": f"nice {k}!",
            }
            for k in range(i % 4)
        ],
        "notes": [
            {
                "id": f"n{i}",
                "author": "9@N00",
                "authorname": "noter",
                "box": [10, 20, 30 + i, 40],
                "text": "look here",
            }
        ]
        if i % 4 == 1
        else [],
        "group_allocation": [{"id": f"{k}@N2{i}", "title": f"Group {k}"} for k in range((i + 1) % 3)],
    }


def _build_1m_tree(root: Path, mirflickr_images: Path) -> dict[int, dict]:
    """images/, features/, metadata/, tags/ and license/ as MIRFLICKR-1M and s16a chunk them."""
    originals = sorted(mirflickr_images.glob("im*.jpg"))[: len(NUMBERS)]
    rng = np.random.default_rng(21)
    truth: dict[int, dict] = {}
    for i, (n, original) in enumerate(zip(NUMBERS, originals, strict=True)):
        k = str(n // 10000)
        image = root / "images" / k / f"{n}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, image)
        fc7 = (np.abs(rng.normal(size=4096)) * 3).astype(np.float32).tolist()
        fc8 = rng.normal(size=1000).astype(np.float32).tolist()
        seed_write_dat(root / "features" / k / f"{n}.dat", fc7, fc8)
        record = _s16a_record(i, n)
        (root / "metadata" / k).mkdir(parents=True, exist_ok=True)
        (root / "metadata" / k / f"{n}.json").write_text(json.dumps(record, ensure_ascii=False), "utf-8")
        if record["tags"]:  # the 1M's own tag files agree with the s16a JSON
            (root / "tags" / k).mkdir(parents=True, exist_ok=True)
            (root / "tags" / k / f"{n}.txt").write_text("\n".join(record["tags"]) + "\n", "utf-8")
        licence = None
        if i % 2 == 0:
            licence = "Attribution-NonCommercial License"
            (root / "license" / k).mkdir(parents=True, exist_ok=True)
            (root / "license" / k / f"{n}.txt").write_text(licence + "\n", "utf-8")
        truth[n] = {"record": record, "license": licence, "image": image.read_bytes()}
    return truth


def _relfiles(folder: Path, ext: str) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob(f"*.{ext}")}


def test_the_1m_layout_imports_and_exports_back_to_the_same_tree(
    tmp_path: Path, mirflickr_images: Path
) -> None:
    tree = tmp_path / "mirflickr1m"
    truth = _build_1m_tree(tree, mirflickr_images)
    assert detect_layout(tree) == "mirflickr"
    assert detect_layout(tree / "images") == "mirflickr"  # the images folder itself, too

    corpus = Corpus.create(tmp_path / "corpus")
    try:
        report = import_folder(corpus, tree, workers=1)
        assert (report.layout, report.imported, report.failed) == ("mirflickr", len(NUMBERS), 0)
        rows = corpus.conn.execute(
            "SELECT source, source_id, primary_label, tags, license FROM photos"
        ).fetchall()
        assert {r["source"] for r in rows} == {"mirflickr"}
        assert {r["primary_label"] for r in rows} == {"mirflickr"}  # not "10", the chunk folder
        assert sorted(int(r["source_id"]) for r in rows) == NUMBERS
        for r in rows:
            n = int(r["source_id"])
            assert json.loads(r["tags"]) == truth[n]["record"]["tags"]
            assert r["license"] == truth[n]["license"]

        dat = import_mirflickr(corpus, tree / "features")
        assert (dat.files, dat.imported, dat.unmatched, dat.refused) == (len(NUMBERS), len(NUMBERS), 0, 0)
        assert feature_store.open_feature_set(corpus, "mirflickr.fc7").dims == 4096

        out = tmp_path / "out"
        export_mirflickr(corpus, out / "features", fc7_set="mirflickr.fc7", fc8_set="mirflickr.fc8")
        assert export_mirflickr_json(corpus, out / "metadata") == len(NUMBERS)
    finally:
        corpus.close()
    proc = run_cli("export", "mirflickr-images", str(out / "images"), "--corpus", str(tmp_path / "corpus"),
                   "--quiet")  # fmt: skip
    assert f'"images": {len(NUMBERS)}' in proc.stdout

    # Same chunk folders and names in all three trees, and the same as the distribution's.
    expected = {f"{n // 10000}/{n}" for n in NUMBERS}
    for folder, ext in (("images", "jpg"), ("features", "dat"), ("metadata", "json")):
        assert _relfiles(tree / folder, ext) == {f"{e}.{ext}" for e in expected}, folder
        assert _relfiles(out / folder, ext) == {f"{e}.{ext}" for e in expected}, folder
    for n in NUMBERS:
        k = n // 10000
        # images: the very bytes
        assert (out / "images" / str(k) / f"{n}.jpg").read_bytes() == truth[n]["image"]
        # features: the very bytes, and the page's reader gets the same vectors back
        assert (out / "features" / str(k) / f"{n}.dat").read_bytes() == (
            tree / "features" / str(k) / f"{n}.dat"
        ).read_bytes()
        fc7_in, fc8_in = seed_load_dat(tree / "features" / str(k) / f"{n}.dat")
        fc7_out, fc8_out = seed_load_dat(out / "features" / str(k) / f"{n}.dat")
        np.testing.assert_array_equal(fc7_out, fc7_in)
        np.testing.assert_array_equal(fc8_out, fc8_in)
        # metadata: the nine s16a fields, by the page's names, with the same values
        exported = json.loads((out / "metadata" / str(k) / f"{n}.json").read_text("utf-8"))
        original = truth[n]["record"]
        for key in SEED_KEYS.values():
            assert key in exported, (n, key)
            assert exported[key] == original[key], (n, key, exported[key], original[key])
        assert exported["source_id"] == str(n)
        assert "enriched" not in exported and "caption_raw" not in exported and "lat" not in exported


def test_every_format_names_a_photo_alike_and_a_split_filter_moves_nothing(
    tmp_path: Path, mirflickr_images: Path
) -> None:
    """The issue's example: photo 10081 was 0/10081.json but 1/10081.dat. Now every format puts a
    MIRFLICKR photo at <N // 10000>/<N>, any other photo at <id // 10000>/p<id>, whatever else the
    export holds."""
    flat = tmp_path / "mirflickr25k"
    flat.mkdir()
    numbers = [10081, 3, 20000]
    for n, original in zip(numbers, sorted(mirflickr_images.glob("im*.jpg"))[:3], strict=True):
        shutil.copyfile(original, flat / f"im{n}.jpg")
    plain = tmp_path / "holiday"
    plain.mkdir()
    for original in sorted(mirflickr_images.glob("im*.jpg"))[3:5]:
        shutil.copyfile(original, plain / original.name.replace("im", "beach"))
    corpus = Corpus.create(tmp_path / "corpus")
    try:
        import_folder(corpus, flat, workers=1)
        import_folder(corpus, plain, workers=1)
        ids = dict(corpus.conn.execute("SELECT source_id, id FROM photos").fetchall())
        rng = np.random.default_rng(3)
        for name, dims in (("a", 8), ("b", 4)):
            with corpus.transaction():
                rows = rng.normal(size=(len(ids), dims))
                feature_store.append_rows(
                    corpus, name, sorted(ids.values()), rows, model_id="test", dtype="float32", params={}
                )
        # A split on some photos only, as curate would leave them.
        keep = [ids["10081"], ids[next(s for s in ids if s.startswith("beach"))]]
        with corpus.transaction() as conn:
            conn.executemany(
                "INSERT INTO curation (photo_id, split, updated_at) VALUES (?, 'train', '2024-01-01')",
                [(i,) for i in keep],
            )
        beach = sorted(v for s, v in ids.items() if s.startswith("beach"))
        names = {"1/10081", "0/3", "2/20000", *(f"{i // 10000}/p{i}" for i in beach)}
        train = {"1/10081", f"0/p{keep[1]}"}
        out = tmp_path / "out"
        export_mirflickr(corpus, out / "dat", fc7_set="a", fc8_set="b")
        assert {n.removesuffix(".dat") for n in _relfiles(out / "dat", "dat")} == names
        index = (out / "dat" / "index.csv").read_text("utf-8")
        beach_id = next(s for s, v in ids.items() if v == beach[0])
        assert f"0/p{beach[0]}.dat,{beach[0]},folder,{beach_id}" in index
        export_mirflickr_json(corpus, out / "json")
        assert {n.removesuffix(".json") for n in _relfiles(out / "json", "json")} == names
        export_mirflickr_json(corpus, out / "json-train", splits={"train"})
        assert {n.removesuffix(".json") for n in _relfiles(out / "json-train", "json")} == train
        export_mirflickr_images(corpus, out / "img", workers=1)
        assert {n.removesuffix(".jpg") for n in _relfiles(out / "img", "jpg")} == names
        export_mirflickr_images(corpus, out / "img-train", splits={"train"}, workers=1)
        assert {n.removesuffix(".jpg") for n in _relfiles(out / "img-train", "jpg")} == train
    finally:
        corpus.close()


def test_numbered_albums_are_not_taken_for_the_1m_layout(tmp_path: Path, mirflickr_images: Path) -> None:
    """A plain tree of numbered folders: 2019/1.jpg breaks the 1M's rule (1 // 10000 is 0, not 2019)."""
    src = tmp_path / "albums"
    (src / "2019").mkdir(parents=True)
    originals = sorted(mirflickr_images.glob("im*.jpg"))[:2]
    for i, original in enumerate(originals):
        shutil.copyfile(original, src / "2019" / f"{i + 1}.jpg")
    assert detect_layout(src) == "plain"
    (src / "2019").rename(src / "0")  # now it does follow the rule: 0/1.jpg, 0/2.jpg
    assert detect_layout(src) == "mirflickr"
    (src / "notes").mkdir()  # a folder that is no chunk: not the 1M layout
    assert detect_layout(src) == "plain"


def test_mirflickr_text_metadata_files_land_in_the_catalog(tmp_path: Path, mirflickr_images: Path) -> None:
    """EXIF and licence files of the 25K (meta/exif/exif<N>.txt, meta/license/license<N>.txt) and of
    the 1M (exif/<k>/<N>.txt): EXIF in photo_exif marked as from the dataset, licence on the photo."""
    flat = tmp_path / "mirflickr"
    (flat / "meta" / "exif").mkdir(parents=True)
    (flat / "meta" / "license").mkdir(parents=True)
    originals = sorted(mirflickr_images.glob("im*.jpg"))[:3]
    for n, original in zip((1, 2, 3), originals, strict=True):
        shutil.copyfile(original, flat / f"im{n}.jpg")
    # Flickr's labels, "-name" then the value; a value may start with "-" itself.
    (flat / "meta" / "exif" / "exif1.txt").write_text(
        "-Make\nNIKON CORPORATION\n-Model\nNIKON D50\n-Exposure\n0.004 sec (1/250)\n-Aperture\nf/8.0\n"
        "-Exposure Bias\n-0.3 EV\n-ISO Speed\n200\n-Focal Length\n18 mm\n"
        "-Date and Time (Original)\n2007:06:02 14:30:01\n",
        "utf-8",
    )
    (flat / "meta" / "license" / "license2.txt").write_text(
        "License: Attribution License\nPhoto url: https://www.flickr.com/photos/someone/123/\n"
        "Owner: someone\nTitle: Harbour at dusk\n",
        "utf-8",
    )
    tree = tmp_path / "mirflickr1m"
    (tree / "images" / "10").mkdir(parents=True)
    (tree / "exif_raw" / "10").mkdir(parents=True)
    shutil.copyfile(originals[2], tree / "images" / "10" / "103169.jpg")
    (tree / "exif_raw" / "10" / "103169.txt").write_text("Make: Canon\nISO: 400\nFNumber: 28/10\n", "utf-8")
    corpus = Corpus.create(tmp_path / "corpus")
    try:
        import_folder(corpus, flat, workers=1)
        import_folder(corpus, tree, workers=1)
        exif = {
            r["source_id"]: dict(r)
            for r in corpus.conn.execute(
                "SELECT p.source_id, e.* FROM photo_exif e JOIN photos p ON p.id = e.photo_id"
            )
        }
        photo2 = corpus.conn.execute(
            "SELECT license, owner, title, page_url FROM photos WHERE source_id = '2'"
        ).fetchone()
    finally:
        corpus.close()
    assert set(exif) == {"1", "103169"}
    one = exif["1"]
    assert (one["make"], one["model"], one["iso"]) == ("NIKON CORPORATION", "NIKON D50", 200)
    assert one["exposure_s"] == pytest.approx(1 / 250) and one["f_number"] == 8.0
    assert one["focal_length_mm"] == 18.0 and one["taken_at"] == "2007-06-02T14:30:01Z"
    assert set(json.loads(one["sources"]).values()) == {"dataset"}
    big = exif["103169"]
    assert (big["make"], big["iso"], big["f_number"]) == ("Canon", 400, 2.8)
    assert tuple(photo2) == (
        "Attribution License", "someone", "Harbour at dusk", "https://www.flickr.com/photos/someone/123/"
    )  # fmt: skip


def test_s16a_values_of_the_wrong_shape_are_dropped_one_by_one(
    tmp_path: Path, mirflickr_images: Path
) -> None:
    """An s16a file is outside input: each value of the wrong shape is dropped on its own, the good
    ones beside it are kept, and the photo is imported; a key whose value is not s16a-shaped stays
    with the photo's other metadata instead of vanishing."""
    tree = tmp_path / "mirflickr1m"
    (tree / "images" / "0").mkdir(parents=True)
    (tree / "metadata" / "0").mkdir(parents=True)
    shutil.copyfile(sorted(mirflickr_images.glob("im*.jpg"))[0], tree / "images" / "0" / "42.jpg")
    hostile = {
        "title": "Fine",
        "exif_data": {"make": ["a", "list"], "iso": "lots", "f_number": "NaN", "model": "  X100  ",
                      "taken_at": 12, "sources": {"model": "../../etc"}},
        "album_allocation": [{"id": "721", "title": "kept"}, "junk", {"title": "no id"}, {"id": {"x": 1}}],
        "user_comments": "not a list",
        "notes": [{"id": "n1", "box": [1, 2], "text": "short box"}, 7],
        "geo_information": {"latitude": 200, "longitude": 5},
        "group_allocation": {"id": "not in a list"},
        "views": "12",
    }  # fmt: skip
    (tree / "metadata" / "0" / "42.json").write_text(json.dumps(hostile), "utf-8")
    corpus = Corpus.create(tmp_path / "corpus")
    try:
        report = import_folder(corpus, tree, workers=1)
        assert (report.imported, report.failed) == (1, 0)
        photo = corpus.conn.execute("SELECT id, title, lat, lon, extra FROM photos").fetchone()
        assert photo["title"] == "Fine" and photo["lat"] is None and photo["lon"] is None
        leftovers = json.loads(photo["extra"])["metadata"]
        assert leftovers == {"group_allocation": {"id": "not in a list"}, "user_comments": "not a list"}
        contexts = corpus.conn.execute("SELECT kind, context_id, title FROM photo_contexts").fetchall()
        assert [tuple(r) for r in contexts] == [("album", "721", "kept")]
        exif = corpus.conn.execute("SELECT model, make, iso, f_number, sources FROM photo_exif").fetchone()
        assert (exif["model"], exif["make"], exif["iso"], exif["f_number"]) == ("X100", None, None, None)
        assert json.loads(exif["sources"]) == {"model": "dataset"}  # an unknown origin is not taken
        assert corpus.conn.execute("SELECT COUNT(*) FROM photo_comments").fetchone()[0] == 0
        assert corpus.conn.execute("SELECT views FROM photo_social").fetchone()[0] == 12
        export_mirflickr_json(corpus, tmp_path / "json")
    finally:
        corpus.close()
    exported = json.loads((tmp_path / "json" / "0" / "42.json").read_text("utf-8"))
    assert exported["notes"] == [
        {"id": "n1", "author": None, "authorname": None, "box": None, "text": "short box"}
    ]
    assert exported["user_comments"] == [] and exported["geo_information"] is None
