"""The featurize stage on real photos: EfficientNet-Lite0 features, ImageNet labels, ontology categories,
failures, resume and incremental runs, raw pixels (+PCA), and VGG19/ResNet50 with user weights.

References are computed here independently of the pipeline: preprocessing with plain Pillow, class
indices from the standard ImageNet-1k ordering (dogs are 151-268, domestic cats 281-285, espresso 967).
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from photocorpus import feature_store
from photocorpus.backbones.onnx_runtime import OnnxImageModel, ensure_efficientnet_lite0_onnx
from photocorpus.config import FeaturizeSettings, Settings
from photocorpus.corpus import Corpus
from photocorpus.features.decode import Decoded
from photocorpus.features.inference_pool import InferencePool
from photocorpus.features.model_registry import FeaturizeError
from photocorpus.features.pending import pending_photo_ids
from photocorpus.features.pipeline import featurize_images
from photocorpus.features.runners import Inferred, join_inferred
from photocorpus.image_preprocess import raw_pixels
from photocorpus.importing import import_folder
from tests.helpers import child_pids

ESPRESSO = 967
DOMESTIC_CATS = range(281, 286)
DOGS = range(151, 269)
STAGE = "featurize:efficientnet-lite0"


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private ONNX cache shared by the featurize test modules (exported once per session)."""
    root = tmp_path_factory.getbasetemp() / "featurize-onnx-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHOTOCORPUS_CACHE_DIR", str(root))
        yield root


def _crop_224(path: Path) -> np.ndarray:
    """Independent reference preprocessing: RGB, short side 256 (bicubic), centre 224 crop, uint8 HWC."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = 256 / min(w, h)
        im = im.resize((max(256, int(w * scale)), max(256, int(h * scale))), Image.Resampling.BICUBIC)
        left, top = round((im.width - 224) / 2), round((im.height - 224) / 2)
        return np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.uint8)


def _copy(paths: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copyfile(p, dest / p.name)


def _file_of(corpus: Corpus, photo_id: int) -> Path:
    row = corpus.conn.execute("SELECT path FROM files WHERE photo_id = ?", (photo_id,)).fetchone()
    return corpus.abs_path(row[0])


@pytest.fixture(scope="module")
def lite0(tmp_path_factory: pytest.TempPathFactory, instany_images: Path, onnx_cache: Path):
    """A corpus of 100 real photos + scikit-image's coffee and chelsea, featurized once."""
    base = tmp_path_factory.mktemp("lite0")
    photos = sorted(instany_images.glob("*.jpg"))
    _copy(photos[:100], base / "src" / "nyc")
    samples = base / "src" / "samples"
    samples.mkdir()
    Image.fromarray(skimage.data.coffee()).save(samples / "coffee.jpg", quality=95)
    Image.fromarray(skimage.data.chelsea()).save(samples / "chelsea.jpg", quality=95)
    corpus = Corpus.create(base / "c", Settings(featurize=FeaturizeSettings(shard_rows=64)))
    import_folder(corpus, base / "src", workers=1)
    ids = [r[0] for r in corpus.conn.execute("SELECT photo_id FROM files ORDER BY photo_id")]
    # Damage two stored files after import, as a disk might: one overwritten, one gone.
    broken, missing = ids[3], ids[7]
    _file_of(corpus, broken).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing_path = _file_of(corpus, missing)
    kept = missing_path.read_bytes()
    missing_path.unlink()
    report = featurize_images(corpus, workers=2, threads=2, batch_size=16)
    yield {
        "corpus": corpus, "report": report, "base": base, "photos": photos, "broken": broken,
        "missing": missing, "missing_path": missing_path, "missing_bytes": kept,
    }  # fmt: skip
    corpus.close()


def test_first_run_stores_features_logits_labels_and_failures(lite0: dict) -> None:
    corpus, report = lite0["corpus"], lite0["report"]
    assert report.pending == 102
    assert report.computed == 100 and report.failed == 2
    assert report.failures == {"corrupt_image": 1, "read_error": 1}
    feats = feature_store.open_feature_set(corpus, "efficientnet-lite0")
    logits = feature_store.open_feature_set(corpus, "efficientnet-lite0.logits")
    assert (feats.dims, feats.dtype, feats.rows) == (1280, "float16", 100)
    assert (logits.dims, logits.dtype, logits.rows) == (1000, "float16", 100)
    # shard_rows=64 wrote two shards (64 + 36 rows); the complete run compacted each set into one mmap
    assert report.shards == 2 and len(feats.shards) == len(logits.shards) == 1
    assert isinstance(feats.matrix(), np.memmap)
    assert feats.photo_ids().tolist() == logits.photo_ids().tolist()
    assert len(set(feats.photo_ids().tolist())) == 100
    assert lite0["broken"] not in feats.photo_ids() and lite0["missing"] not in feats.photo_ids()
    stages = dict(
        corpus.conn.execute("SELECT status, COUNT(*) FROM stages WHERE stage = ? GROUP BY status", (STAGE,))
    )
    assert stages == {"done": 100, "failed": 2}


def test_features_match_an_independent_reference(lite0: dict) -> None:
    corpus = lite0["corpus"]
    fs = feature_store.open_feature_set(corpus, "efficientnet-lite0")
    logits = feature_store.open_feature_set(corpus, "efficientnet-lite0.logits")
    ids = fs.photo_ids()
    sample = [int(ids[i]) for i in (0, 40, 70, 99)]
    crops = np.stack([_crop_224(_file_of(corpus, pid)) for pid in sample])
    x = (crops.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)  # mean = std = 0.5
    model = OnnxImageModel(ensure_efficientnet_lite0_onnx(), num_threads=2)
    ref_feats, ref_logits = model.run(np.ascontiguousarray(x))
    rows = fs.rows_for(sample)
    got = np.asarray(fs.matrix()[rows], dtype=np.float32)
    np.testing.assert_allclose(got, ref_feats, rtol=2e-2, atol=2e-2)
    got_logits = np.asarray(logits.matrix()[rows], dtype=np.float32)
    np.testing.assert_allclose(got_logits, ref_logits, rtol=2e-2, atol=5e-2)
    assert (got_logits.argmax(1) == ref_logits.argmax(1)).all()


def test_labels_are_top5_softmax_and_categories_follow_top1(lite0: dict) -> None:
    corpus = lite0["corpus"]
    logits = feature_store.open_feature_set(corpus, "efficientnet-lite0.logits")
    matrix = np.asarray(logits.matrix(), dtype=np.float32)
    rows = corpus.conn.execute(
        "SELECT photo_id, rank, class_index, wnid, class_name, prob FROM image_labels "
        "WHERE model = 'efficientnet-lite0' ORDER BY photo_id, rank"
    ).fetchall()
    assert len(rows) == 100 * 5
    by_photo: dict[int, list] = {}
    for r in rows:
        by_photo.setdefault(r[0], []).append(r)
    for pid, ranks in by_photo.items():
        assert [r[1] for r in ranks] == [1, 2, 3, 4, 5]
        probs = [r[5] for r in ranks]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        row = matrix[logits.rows_for([pid])[0]]
        assert ranks[0][2] == int(row.argmax())
        p = np.exp(row - row.max())
        assert abs(ranks[0][5] - p.max() / p.sum()) < 0.02  # float16 logits
        assert ranks[0][3].startswith("n") and len(ranks[0][3]) == 9
    cats = corpus.conn.execute(
        "SELECT ontology, COUNT(*), MIN(mass), MAX(mass) FROM image_categories "
        "WHERE model = 'efficientnet-lite0' GROUP BY ontology"
    ).fetchall()
    assert {c[0]: c[1] for c in cats} == {"coarse": 100, "seed004": 100}
    assert all(c[2] > 0 and c[3] <= 1.0001 for c in cats)
    # a category's mass includes its top-1 class, so it is never below the top-1 probability
    below = corpus.conn.execute(
        "SELECT COUNT(*) FROM image_categories c JOIN image_labels l ON l.photo_id = c.photo_id "
        "AND l.model = c.model AND l.rank = 1 WHERE c.mass < l.prob - 1e-4"
    ).fetchone()[0]
    assert below == 0


def test_coffee_is_espresso_and_chelsea_is_a_cat(lite0: dict) -> None:
    corpus = lite0["corpus"]
    top1 = {
        r[0]: (r[1], r[2], r[3])
        for r in corpus.conn.execute(
            "SELECT p.source_id, l.class_index, l.class_name, c.category FROM image_labels l "
            "JOIN photos p ON p.id = l.photo_id JOIN image_categories c ON c.photo_id = l.photo_id "
            "AND c.model = l.model AND c.ontology = 'seed004' WHERE l.rank = 1"
        )
    }
    assert top1["samples/coffee"][:2] == (ESPRESSO, "espresso")
    assert top1["samples/coffee"][2] == "Coffee"
    assert top1["samples/chelsea"][0] in DOMESTIC_CATS


def test_rerun_retries_only_transient_failures_then_incremental_adds_exactly_100(lite0: dict) -> None:
    corpus = lite0["corpus"]
    fs = feature_store.open_feature_set(corpus, "efficientnet-lite0")
    before = np.asarray(fs.matrix()).copy()
    before_ids = fs.photo_ids().copy()
    again = featurize_images(corpus, workers=1, threads=2)
    # the corrupt file is a property of its bytes (not retried); the missing one may come back
    assert (again.pending, again.computed, again.failures) == (1, 0, {"read_error": 1})
    lite0["missing_path"].write_bytes(lite0["missing_bytes"])
    restored = featurize_images(corpus, workers=1, threads=2)
    assert (restored.pending, restored.computed, restored.failed) == (1, 1, 0)

    _copy(lite0["photos"][100:200], lite0["base"] / "more" / "nyc")
    import_folder(corpus, lite0["base"] / "more", workers=1)
    grown = featurize_images(corpus, workers=2, threads=2, batch_size=16)
    assert grown.pending == grown.computed == 100
    fs = feature_store.open_feature_set(corpus, "efficientnet-lite0")
    assert fs.rows == 201 and len(set(fs.photo_ids().tolist())) == 201
    rows = fs.rows_for(before_ids.tolist())
    np.testing.assert_array_equal(np.asarray(fs.matrix())[rows], before)  # old rows untouched
    assert len(pending_photo_ids(corpus, ["efficientnet-lite0", "efficientnet-lite0.logits"], STAGE)) == 0
    assert featurize_images(corpus).pending == 0


def test_mirflickr_dogs_have_a_dog_class_in_their_top5(
    tmp_path: Path, mirflickr_images: Path, onnx_cache: Path
) -> None:
    with open(mirflickr_images.parent / "labels.csv", newline="") as fh:
        dogs = [r["image"] for r in csv.DictReader(fh) if r["dog"] == "1"][:40]
    _copy([mirflickr_images / name for name in dogs], tmp_path / "src")
    with Corpus.create(tmp_path / "c") as corpus:
        import_folder(corpus, tmp_path / "src", workers=1)
        assert featurize_images(corpus, workers=1, threads=2).computed == 40
        hits = corpus.conn.execute(
            "SELECT COUNT(DISTINCT photo_id) FROM image_labels WHERE class_index BETWEEN ? AND ?",
            (DOGS.start, DOGS.stop - 1),
        ).fetchone()[0]
    assert hits / 40 >= 0.5


def test_torch_backend_agrees_with_onnxruntime(
    tmp_path: Path, instany_images: Path, onnx_cache: Path
) -> None:
    """The eager-torch path (what runs on a CUDA GPU) gives the same features as onnxruntime on CPU."""
    _copy(sorted(instany_images.glob("*.jpg"))[:6], tmp_path / "src")
    results = {}
    for backend in ("onnx", "torch"):
        with Corpus.create(tmp_path / backend) as corpus:
            import_folder(corpus, tmp_path / "src", workers=1)
            report = featurize_images(corpus, backend=backend, workers=0, threads=2)
            assert report.backend.startswith("onnxruntime/" if backend == "onnx" else "torch/")
            results[backend] = np.asarray(
                feature_store.open_feature_set(corpus, "efficientnet-lite0").matrix(), np.float32
            )
    np.testing.assert_allclose(results["torch"], results["onnx"], rtol=2e-2, atol=2e-2)


def test_workers_running_the_model_give_the_rows_of_the_driver_running_it(
    tmp_path: Path, instany_images: Path, onnx_cache: Path
) -> None:
    """On CPU, two workers each decode and run a single-threaded model; one worker leaves the model in
    the driver. Both paths must store the same features, labels and categories, in the same order."""
    _copy(sorted(instany_images.glob("*.jpg"))[300:340], tmp_path / "src")
    runs = {}
    for workers in (2, 1):
        with Corpus.create(tmp_path / f"w{workers}") as corpus:
            import_folder(corpus, tmp_path / "src", workers=1)
            report = featurize_images(corpus, workers=workers, threads=2, batch_size=8)
            assert report.computed == 40
            fs = feature_store.open_feature_set(corpus, "efficientnet-lite0")
            runs[workers] = {
                "backend": report.backend,
                "ids": fs.photo_ids(),
                "features": np.asarray(fs.matrix(), np.float32),
                "labels": corpus.conn.execute(
                    "SELECT photo_id, rank, class_index FROM image_labels ORDER BY photo_id, rank"
                ).fetchall(),
                "categories": corpus.conn.execute(
                    "SELECT photo_id, ontology, category FROM image_categories ORDER BY 1, 2"
                ).fetchall(),
            }
    assert runs[2]["backend"] == "onnxruntime/CPUExecutionProvider [2 workers x 1 thread(s)]"
    assert runs[1]["backend"] == "onnxruntime/CPUExecutionProvider"
    np.testing.assert_array_equal(runs[2]["ids"], runs[1]["ids"])
    np.testing.assert_allclose(runs[2]["features"], runs[1]["features"], atol=2e-3, rtol=1e-3)
    assert runs[2]["labels"] == runs[1]["labels"]
    assert runs[2]["categories"] == runs[1]["categories"]


def test_a_model_the_workers_cannot_load_stops_the_run_with_a_clear_error(
    tmp_path: Path, instany_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached export that became unreadable: the workers cannot open it, so the run stops with a
    FeaturizeError that says so before any photo is marked, instead of a broken process pool."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PHOTOCORPUS_CACHE_DIR", str(cache))  # inherited by the spawned workers
    exported = ensure_efficientnet_lite0_onnx()
    exported.write_bytes(b"not an onnx graph")
    _copy(sorted(instany_images.glob("*.jpg"))[:4], tmp_path / "src")
    with Corpus.create(tmp_path / "c") as corpus:
        import_folder(corpus, tmp_path / "src", workers=1)
        with pytest.raises(FeaturizeError, match="could not be loaded in a featurize worker"):
            featurize_images(corpus, workers=2, threads=2)
        assert corpus.conn.execute("SELECT COUNT(*) FROM stages WHERE stage = ?", (STAGE,)).fetchone()[0] == 0
        assert pending_photo_ids(corpus, ["efficientnet-lite0"], STAGE).size == 4


def test_every_inference_worker_is_started_and_loaded_before_the_first_batch(onnx_cache: Path) -> None:
    """The process pool spawns a worker per submit only while none is idle: a single readiness probe
    left the second worker to start (and load its model) after the first batches were queued."""

    def workers() -> set[int]:
        pids = set()
        for pid in child_pids(os.getpid()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                pids.add(pid)
        return pids

    before = workers()
    with InferencePool(2, "efficientnet-lite0", None, "onnx", 1) as pool:
        assert len(workers() - before) == 2
        assert pool.backend == "onnxruntime/CPUExecutionProvider"


def test_a_batch_run_in_shards_joins_back_in_order() -> None:
    """Shards of one batch (one of them all failures) join into the batch's rows in shard order."""

    def shard(ids: list[int], failed: list[int]) -> Inferred:
        outputs = {"f": np.array([[i, i] for i in ids], np.float32), "l": np.array([[i] for i in ids])}
        fails = [Decoded(i, None, "corrupt_image") for i in failed]
        return Inferred(np.array(ids, np.int64), outputs if ids else None, fails, len(ids) + len(failed))

    joined = join_inferred([shard([5, 6], [7]), shard([], [8, 9]), shard([10], [])])
    np.testing.assert_array_equal(joined.ids, [5, 6, 10])
    assert joined.outputs is not None
    np.testing.assert_array_equal(joined.outputs["f"][:, 0], [5, 6, 10])
    np.testing.assert_array_equal(joined.outputs["l"][:, 0], [5, 6, 10])
    assert [f.photo_id for f in joined.failures] == [7, 8, 9]
    assert joined.size == 6
    nothing = join_inferred([shard([], [1]), shard([], [2])])
    assert nothing.outputs is None and nothing.ids.size == 0 and nothing.size == 2


# --------------------------------------------------------------------------------------- raw pixels
@pytest.fixture()
def small_corpus(tmp_path: Path, instany_images: Path) -> Iterator[Corpus]:
    _copy(sorted(instany_images.glob("*.jpg"))[200:230], tmp_path / "src")
    with Corpus.create(tmp_path / "c") as corpus:
        import_folder(corpus, tmp_path / "src", workers=1)
        yield corpus


def test_raw_pixels_are_the_squashed_150px_photo(small_corpus: Corpus) -> None:
    report = featurize_images(small_corpus, "raw-pixels", workers=2)
    assert report.computed == 30 and report.feature_sets == ["raw-pixels"]
    fs = feature_store.open_feature_set(small_corpus, "raw-pixels")
    assert (fs.dims, fs.rows) == (150 * 150 * 3, 30)
    pid = int(fs.photo_ids()[5])
    with Image.open(_file_of(small_corpus, pid)) as im:
        ref = np.asarray(im.convert("RGB").resize((150, 150), Image.Resampling.BICUBIC), np.float32) / 255
    # The pipeline decodes this 300 px JPEG at half scale in the DCT domain (draft) instead of a full
    # decode + bicubic: the same picture, with slightly different edge pixels.
    diff = np.abs(np.asarray(fs.matrix()[5], np.float32) - ref.reshape(-1))
    assert (
        diff.mean() < 0.02
        and np.corrcoef(np.asarray(fs.matrix()[5], np.float32), ref.reshape(-1))[0, 1] > 0.98
    )
    # no labels for a model without ImageNet outputs
    assert small_corpus.conn.execute("SELECT COUNT(*) FROM image_labels").fetchone()[0] == 0


def _plant_kill_leftovers(folder: Path) -> list[Path]:
    """What kills leave in a feature folder: a compaction written but never registered, a shard
    renamed but never registered, a writer's temp file; dated before the next run starts."""
    left = [
        folder / "compact-0badc0de.npy",
        folder / "compact-0badc0de.ids.npy",
        folder / "shard-00042.npy",
        folder / "shard-00042.ids.npy",
        folder / ".shard-00042.npy.0123456789abcdef.tmp",  # a scratch file of earlier versions
        folder / ".shard-00042.0123456789ab.tmp.npy",  # one of corpus_files.atomic_path's
    ]
    an_hour_ago = time.time() - 3600
    for path in left:
        path.write_bytes(b"left by a kill")
        os.utime(path, (an_hour_ago, an_hour_ago))
    return left


def test_files_left_by_a_kill_in_the_feature_folder_are_swept_by_the_next_run(
    small_corpus: Corpus, tmp_path: Path, instany_images: Path
) -> None:
    assert featurize_images(small_corpus, "raw-pixels", workers=0).computed == 30
    fs = feature_store.open_feature_set(small_corpus, "raw-pixels")
    folder = small_corpus.abs_path(fs.path)
    registered = {p.name for p in folder.iterdir()}

    # killed during the final compaction: the re-run has no photo left to do, and must still sweep
    left = _plant_kill_leftovers(folder)
    assert featurize_images(small_corpus, "raw-pixels", workers=0).computed == 0
    assert [p.name for p in left if p.exists()] == []
    assert {p.name for p in folder.iterdir()} == registered

    # killed mid-run: the re-run that does the rest sweeps too
    left = _plant_kill_leftovers(folder)
    _copy(sorted(instany_images.glob("*.jpg"))[230:233], tmp_path / "more" / "src")
    import_folder(small_corpus, tmp_path / "more", workers=1)
    assert featurize_images(small_corpus, "raw-pixels", workers=0).computed == 3
    assert [p.name for p in left if p.exists()] == []
    fs = feature_store.open_feature_set(small_corpus, "raw-pixels")
    assert fs.rows == 33 and len(set(fs.photo_ids().tolist())) == 33
    expected = {f"{s}{suffix}" for s in fs.shards for suffix in (".npy", ".ids.npy")}
    assert {p.name for p in folder.iterdir()} == expected


def test_raw_pixels_pca_basis_is_kept_for_incremental_runs(
    small_corpus: Corpus, tmp_path: Path, instany_images: Path
) -> None:
    report = featurize_images(small_corpus, "raw-pixels", pca_dims=8, workers=0)
    assert report.feature_sets == ["raw-pixels.pca8"] and report.computed == 30
    fs = feature_store.open_feature_set(small_corpus, "raw-pixels.pca8")
    assert fs.dims == 8 and fs.params["pca"]["dims"] == 8
    basis = small_corpus.abs_path(fs.path) / "pca.npz"
    first = basis.read_bytes()
    old = np.asarray(fs.matrix(), np.float32).copy()

    _copy(sorted(instany_images.glob("*.jpg"))[230:236], tmp_path / "more" / "src")
    import_folder(small_corpus, tmp_path / "more", workers=1)
    again = featurize_images(small_corpus, "raw-pixels", pca_dims=8, workers=0)
    assert again.computed == 6
    assert basis.read_bytes() == first  # the same projection, not a refit
    fs = feature_store.open_feature_set(small_corpus, "raw-pixels.pca8")
    np.testing.assert_array_equal(np.asarray(fs.matrix()[:30], np.float32), old)
    with np.load(basis) as data:
        assert data["components"].shape == (8, 150 * 150 * 3)
        x = raw_pixels(_file_of(small_corpus, int(fs.photo_ids()[-1])), 150)
        expected = (x - data["mean"]) @ data["components"].T
    np.testing.assert_allclose(np.asarray(fs.matrix()[-1], np.float32), expected, rtol=1e-2, atol=2e-2)


# ------------------------------------------------------------------------- VGG19 / ResNet50 weights
def test_vgg19_with_user_weights_stores_fc1_fc2_and_logits(small_corpus: Corpus, tmp_path: Path) -> None:
    from photocorpus.backbones.vgg import VGG19

    torch.manual_seed(0)
    weights = tmp_path / "vgg19-random.pth"
    state = VGG19().state_dict()
    torch.save(state, weights)
    with pytest.raises(FeaturizeError, match=r"needs weights=FILE \(--weights FILE\)"):
        featurize_images(small_corpus, "vgg19")
    report = featurize_images(
        small_corpus, "vgg19", weights=weights, backend="torch", dtype="float32", limit=2, workers=0
    )
    assert report.computed == 2
    assert report.feature_sets == ["vgg19", "vgg19.fc2", "vgg19.logits"]
    sets = {n: feature_store.open_feature_set(small_corpus, n) for n in report.feature_sets}
    assert [sets[n].dims for n in report.feature_sets] == [4096, 4096, 1000]
    fc1, fc2, logits = (torch.from_numpy(np.array(sets[n].matrix())) for n in report.feature_sets)
    assert (fc1 >= 0).all() and (fc2 >= 0).all() and fc1.abs().sum() > 0  # fc1/fc2 are after their ReLU
    # The sets hold the classifier's three stages in order: fc2 and the logits follow from fc1 through the
    # checkpoint's own tensors (torchvision indices 3 and 6), which no other assignment of outputs satisfies.
    ref_fc2 = torch.relu(fc1 @ state["classifier.3.weight"].T + state["classifier.3.bias"])
    ref_logits = fc2 @ state["classifier.6.weight"].T + state["classifier.6.bias"]
    np.testing.assert_allclose(fc2.numpy(), ref_fc2.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits.numpy(), ref_logits.numpy(), rtol=1e-4, atol=1e-5)
    # other weights must not be mixed into the same sets
    torch.manual_seed(1)
    other = tmp_path / "vgg19-other.pth"
    torch.save(VGG19().state_dict(), other)
    with pytest.raises(FeaturizeError, match="features remove vgg19"):
        featurize_images(small_corpus, "vgg19", weights=other, backend="torch", dtype="float32")


def test_resnet50_weights_through_onnx_match_eager_torch(
    small_corpus: Corpus, tmp_path: Path, onnx_cache: Path
) -> None:
    from photocorpus.backbones.resnet import ResNet50, load_resnet50

    torch.manual_seed(0)
    weights = tmp_path / "resnet50-random.pth"
    torch.save(ResNet50().state_dict(), weights)
    with pytest.raises(FeaturizeError, match="cannot load resnet50 weights"):
        featurize_images(small_corpus, "resnet50", weights=_vgg_like(tmp_path), backend="torch")
    report = featurize_images(
        small_corpus, "resnet50", weights=weights, backend="onnx", dtype="float32", limit=4, workers=0
    )
    assert report.backend.startswith("onnxruntime/") and report.computed == 4
    feats = feature_store.open_feature_set(small_corpus, "resnet50")
    logits = feature_store.open_feature_set(small_corpus, "resnet50.logits")
    assert (feats.dims, logits.dims) == (2048, 1000)
    ids = feats.photo_ids().tolist()
    crops = np.stack([_crop_224(_file_of(small_corpus, pid)) for pid in ids])
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    x = torch.from_numpy(((crops / np.float32(255) - mean) / std).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        ref_feats, ref_logits = load_resnet50(weights)(x)
    np.testing.assert_allclose(np.asarray(feats.matrix()), ref_feats.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.asarray(logits.matrix()), ref_logits.numpy(), rtol=1e-3, atol=1e-3)
    assert (
        small_corpus.conn.execute("SELECT COUNT(*) FROM image_labels WHERE model = 'resnet50'").fetchone()[0]
        == 4 * 5
    )


def _vgg_like(tmp_path: Path) -> Path:
    """A state dict with the wrong keys for ResNet50."""
    path = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    return path
