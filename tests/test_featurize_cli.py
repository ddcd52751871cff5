"""featurize and features from the command line: kill -9 and resume, list, .npz export, MIRFLICKR .dat."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from photocorpus import feature_store
from photocorpus.config import FeaturizeSettings, Settings
from photocorpus.corpus import Corpus
from photocorpus.features.mirflickr_dat import read_dat
from tests.conftest import run_cli
from tests.helpers import child_pids, process_alive


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The private ONNX cache shared with tests/test_featurize.py (one export per session)."""
    return {"PHOTOCORPUS_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "featurize-onnx-cache")}


def _make_corpus(path: Path, photos: list[Path], **featurize: int) -> None:
    src = path.parent / f"{path.name}-src" / "nyc"
    src.mkdir(parents=True)
    for p in photos:
        shutil.copyfile(p, src / p.name)
    with Corpus.create(path, Settings(featurize=FeaturizeSettings(**featurize))):
        pass
    run_cli("import", str(src.parent), "--corpus", str(path), "--quiet", "--workers", "1")


def _rows(corpus_dir: Path, name: str) -> int:
    conn = sqlite3.connect(f"file:{corpus_dir / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT rows FROM feature_sets WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:  # busy or schema not there yet
        return 0
    finally:
        conn.close()


@pytest.fixture(scope="module")
def featurized(
    tmp_path_factory: pytest.TempPathFactory, instany_images: Path, cache_env: dict
) -> Iterator[Path]:
    """40 photos featurized through the CLI."""
    corpus = tmp_path_factory.mktemp("cli") / "c"
    _make_corpus(corpus, sorted(instany_images.glob("*.jpg"))[500:540])
    out = run_cli("featurize", "--corpus", str(corpus), "--json", "--quiet", env=cache_env)
    report = json.loads(out.stdout)
    assert report["computed"] == 40 and report["feature_sets"] == [
        "efficientnet-lite0",
        "efficientnet-lite0.logits",
    ]
    yield corpus


@pytest.mark.parametrize("workers", ["1", "2"], ids=["model-in-driver", "model-in-workers"])
def test_kill_9_then_rerun_gives_every_photo_exactly_one_row(
    tmp_path: Path, instany_images: Path, cache_env: dict, workers: str
) -> None:
    """With one worker the driver runs the model; with two, each worker runs its own. Either way a
    kill -9 of the command loses nothing committed, leaves no worker behind, and a re-run completes."""
    corpus = tmp_path / "c"
    n = 160
    _make_corpus(corpus, sorted(instany_images.glob("*.jpg"))[1000 : 1000 + n], shard_rows=16, batch_size=8)
    cmd = [
        sys.executable,
        "-m",
        "photocorpus",
        "featurize",
        "--corpus",
        str(corpus),
        "--quiet",
        "--workers",
        workers,
    ]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **cache_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while _rows(corpus, "efficientnet-lite0") < 16 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    helpers = child_pids(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _rows(corpus, "efficientnet-lite0")
    assert 16 <= partial < n, "the run was not interrupted part-way"
    assert len(helpers) >= int(workers)  # the decode or inference workers were running
    deadline = time.monotonic() + 30
    while any(process_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(process_alive(pid) for pid in helpers), "workers outlived the killed command"

    out = json.loads(run_cli("featurize", "--corpus", str(corpus), "--json", "--quiet", env=cache_env).stdout)
    assert out["pending"] == out["computed"] == n - partial
    with Corpus.open(corpus) as c:
        for name in ("efficientnet-lite0", "efficientnet-lite0.logits"):
            fs = feature_store.open_feature_set(c, name)
            ids = fs.photo_ids().tolist()
            assert fs.rows == len(ids) == len(set(ids)) == n
            assert len(fs.shards) == 1
        statuses = c.conn.execute(
            "SELECT status, COUNT(*) FROM stages WHERE stage = 'featurize:efficientnet-lite0' GROUP BY status"
        ).fetchall()
        assert [tuple(r) for r in statuses] == [("done", n)]
        assert c.conn.execute("SELECT COUNT(*) FROM image_labels").fetchone()[0] == 5 * n
        assert c.conn.execute("SELECT COUNT(*) FROM image_categories").fetchone()[0] == 2 * n
        # shard files left by the killed run are not registered and not on disk any more
        folder = c.abs_path(feature_store.feature_dir("efficientnet-lite0"))
        on_disk = sorted(p.name for p in folder.iterdir())
        registered = feature_store.open_feature_set(c, "efficientnet-lite0").shards[0]
        assert on_disk == [f"{registered}.ids.npy", f"{registered}.npy"]


def test_features_list_and_npz_export(featurized: Path, tmp_path: Path) -> None:
    listed = json.loads(run_cli("features", "list", "--corpus", str(featurized), "--json").stdout)
    by_name = {s["name"]: s for s in listed}
    assert by_name["efficientnet-lite0"]["dims"] == 1280 and by_name["efficientnet-lite0"]["rows"] == 40
    assert by_name["efficientnet-lite0.logits"]["dims"] == 1000
    table = run_cli("features", "list", "--corpus", str(featurized)).stdout
    assert "efficientnet-lite0" in table and "1280" in table

    out = tmp_path / "lite0.npz"
    run_cli("features", "export", "efficientnet-lite0", str(out), "--corpus", str(featurized))
    with np.load(out) as data:  # no allow_pickle: plain arrays only
        assert set(data.files) == {"source_id", "source", "photo_id", "features"}
        assert data["features"].dtype == np.float32 and data["features"].shape == (40, 1280)
        assert data["source_id"].dtype.kind == "U"
        source_ids, features, photo_ids = data["source_id"], data["features"], data["photo_id"]
    with Corpus.open(featurized) as c:
        fs = feature_store.open_feature_set(c, "efficientnet-lite0")
        np.testing.assert_array_equal(features, np.asarray(fs.matrix(), dtype=np.float32))
        expected = dict(c.conn.execute("SELECT id, source_id FROM photos"))
    assert [expected[int(i)] for i in photo_ids] == source_ids.tolist()
    assert all(s.split("/")[-1].isdigit() for s in source_ids)  # nyc/<InstaNY100K media id>

    proc = run_cli("features", "export", "nope", str(out), "--corpus", str(featurized), check=False)
    assert proc.returncode == 2 and "no feature set 'nope'" in proc.stderr


def test_export_mirflickr_writes_our_dims_in_the_headers(featurized: Path, tmp_path: Path) -> None:
    out = tmp_path / "dat"
    text = run_cli("features", "export-mirflickr", str(out), "--corpus", str(featurized), "--quiet").stdout
    assert "Wrote 40 .dat files" in text
    files = sorted(out.glob("*/*.dat"))
    assert len(files) == 40
    assert all(f.stat().st_size == 8 + 4 * 1000 + 8 + 4 * 1280 for f in files)
    fc7, fc8 = read_dat(files[0])
    assert fc7.shape == (1280,) and fc8.shape == (1000,)
    index = (out / "index.csv").read_text().splitlines()
    assert index[0] == "dat,photo_id,source,source_id" and len(index) == 41


def _write_raw(path: Path, fc8_dim: int, fc8: np.ndarray, fc7_dim: int, fc7: np.ndarray) -> None:
    """The s16a layout written byte by byte here, independently of photocorpus's writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        np.int64(fc8_dim).tobytes() + fc8.astype("=f4").tobytes() + np.int64(fc7_dim).tobytes()
        + fc7.astype("=f4").tobytes()
    )  # fmt: skip


def test_mirflickr_dat_import_export_round_trip_is_bit_exact(tmp_path: Path, mirflickr_images: Path) -> None:
    numbers = [1, 5, 7, 12, 13, 10001, 16, 26]  # 10001 lives in chunk 1, as in MIRFLICKR-1M
    src = tmp_path / "mirflickr"
    src.mkdir()
    for n in numbers:
        shutil.copyfile(mirflickr_images / f"im{n}.jpg", src / f"im{n}.jpg")
    corpus = tmp_path / "c"
    run_cli("init", str(corpus))
    run_cli("import", str(src), "--corpus", str(corpus), "--quiet", "--workers", "1")
    rng = np.random.default_rng(7)
    dats = tmp_path / "features"
    originals = {}
    for n in numbers[:6]:
        path = dats / str(n // 10000) / f"{n}.dat"
        _write_raw(path, 1000, rng.normal(size=1000), 4096, np.abs(rng.normal(size=4096)) * 10)
        originals[n] = path.read_bytes()
        assert len(originals[n]) == 20_400
    # two broken files for real photos, and one for a photo the corpus does not have
    _write_raw(dats / "0" / "16.dat", 1000, rng.normal(size=1000), 4096, rng.normal(size=4000))  # short
    (dats / "0" / "26.dat").write_bytes(np.int64(-3).tobytes() + b"\x00" * 20_392)  # bad header
    _write_raw(dats / "0" / "31337.dat", 1000, rng.normal(size=1000), 4096, rng.normal(size=4096))

    out = run_cli("features", "import-mirflickr", str(dats), "--corpus", str(corpus), "--json", "--quiet")
    report = json.loads(out.stdout)
    assert (report["files"], report["imported"], report["unmatched"], report["refused"]) == (9, 6, 1, 2)
    assert (report["fc7_dim"], report["fc8_dim"]) == (4096, 1000)
    refusals = " ".join(report["refusals"])
    assert "/16.dat" in refusals and "truncated" in refusals
    assert "/26.dat" in refusals and "reads -3" in refusals
    again = json.loads(
        run_cli(
            "features", "import-mirflickr", str(dats), "--corpus", str(corpus), "--json", "--quiet"
        ).stdout
    )
    assert (again["imported"], again["already"]) == (0, 6)

    with Corpus.open(corpus) as c:
        fc7 = feature_store.open_feature_set(c, "mirflickr.fc7")
        assert (fc7.dims, fc7.dtype, fc7.rows) == (4096, "float32", 6)

    exported = tmp_path / "exported"
    run_cli(
        "features", "export-mirflickr", str(exported), "--fc7", "mirflickr.fc7", "--fc8", "mirflickr.fc8",
        "--corpus", str(corpus), "--quiet",
    )  # fmt: skip
    for n, data in originals.items():
        assert (exported / str(n // 10000) / f"{n}.dat").read_bytes() == data  # bit-exact
    assert len(list(exported.glob("*/*.dat"))) == 6


def test_user_ontology_from_stored_logits_then_remove(featurized: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "mine.json"
    mapping.write_text(json.dumps({"web site": "screens", "n04152593": "screens", "*": "photos"}))
    out = run_cli("features", "categorize", str(mapping), "--corpus", str(featurized)).stdout
    assert "Categorised 40 photos with mine" in out
    with Corpus.open(featurized) as c:
        rows = c.conn.execute(
            "SELECT c.category, l.class_name FROM image_categories c JOIN image_labels l "
            "ON l.photo_id = c.photo_id AND l.model = c.model AND l.rank = 1 WHERE c.ontology = 'mine'"
        ).fetchall()
    assert len(rows) == 40
    assert all((cat == "screens") == (cls in ("web site", "screen")) for cat, cls in rows)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"espreso": "coffee"}))  # a typo must not silently map nothing
    proc = run_cli("features", "categorize", str(bad), "--corpus", str(featurized), check=False)
    assert proc.returncode != 0 and "espreso" in proc.stderr and "espresso" in proc.stderr

    run_cli("features", "remove", "efficientnet-lite0", "--corpus", str(featurized))
    with Corpus.open(featurized) as c:
        assert not feature_store.has_feature_set(c, "efficientnet-lite0")
        assert feature_store.has_feature_set(c, "efficientnet-lite0.logits")
        assert c.conn.execute("SELECT COUNT(*) FROM image_labels").fetchone()[0] == 0
        assert not c.abs_path(feature_store.feature_dir("efficientnet-lite0")).exists()


@pytest.mark.parametrize("workers", ["1", "2"], ids=["model-in-driver", "model-in-workers"])
def test_featurize_efficientnet_lite1_writes_its_sets_and_labels(
    tmp_path: Path, instany_images: Path, cache_env: dict, workers: str
) -> None:
    """Lite1 runs through the same path as Lite0 (onnxruntime, ImageNet labels, both ontologies) with
    its own 240 px crop; its rows match the torch model on that crop."""
    import torch

    from photocorpus.backbones import efficientnet_lite as eff
    from photocorpus.image_preprocess import load_rgb, resize_center_crop

    photos = sorted(instany_images.glob("*.jpg"))[600:604]
    corpus = tmp_path / "c"
    _make_corpus(corpus, photos)
    out = run_cli(
        "featurize", "--corpus", str(corpus), "--model", "efficientnet-lite1", "--workers", workers,
        "--json", "--quiet", env=cache_env,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["computed"] == 4
    assert report["feature_sets"] == ["efficientnet-lite1", "efficientnet-lite1.logits"]
    with Corpus.open(corpus) as c:
        features = feature_store.open_feature_set(c, "efficientnet-lite1")
        logits = feature_store.open_feature_set(c, "efficientnet-lite1.logits")
        assert features.dims == 1280 and logits.dims == 1000 and features.rows == logits.rows == 4
        assert "centre crop 240" in features.params["preprocess"]
        assert not feature_store.has_feature_set(c, "efficientnet-lite0")
        labels = c.conn.execute("SELECT model, COUNT(*) FROM image_labels GROUP BY model").fetchall()
        assert [tuple(r) for r in labels] == [("efficientnet-lite1", 20)]
        ontologies = c.conn.execute(
            "SELECT ontology, COUNT(*) FROM image_categories WHERE model = 'efficientnet-lite1' "
            "GROUP BY ontology ORDER BY ontology"
        ).fetchall()
        assert [tuple(r) for r in ontologies] == [("coarse", 4), ("seed004", 4)]
        paths = dict(c.conn.execute("SELECT photo_id, path FROM files"))
        first = int(features.photo_ids()[0])
        stored = np.asarray(features.matrix(), dtype=np.float32)[0]
        image = c.abs_path(paths[first])
    model = eff.load_pretrained(name="efficientnet-lite1")
    crop = np.asarray(resize_center_crop(load_rgb(image, min_side=272), 272, 240), dtype=np.float32)
    x = torch.from_numpy(crop / 127.5 - 1.0).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        expected = model(x)[0][0].numpy()
    np.testing.assert_allclose(stored, expected, atol=0.02)  # float16 storage
