"""Features of image files outside the catalog, for models trained on Lite1 or a fused Lite0+Lite1 set.

A small corpus of 24 real MIRFLICKR photos is featurized with EfficientNet-Lite0 and -Lite1 by the
featurize stage and the two sets are fused; a file's features computed for search or predict must
equal the stored row of the same photo, or search --image and predict would put files in another
space than the photos they are compared with.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from photocorpus import feature_store
from photocorpus.corpus import Corpus
from photocorpus.features.fusion import fuse_feature_sets
from photocorpus.features.pipeline import featurize_images
from photocorpus.importing import import_folder
from photocorpus.learn.classifier import predict_paths, train_classifier
from photocorpus.learn.dataset import LearnError, photo_meta
from photocorpus.learn.heads import FitSettings
from photocorpus.learn.image_file_features import FeatureBlock, feature_blocks, image_files_features
from photocorpus.learn.search import Searcher
from photocorpus.learn.semantic import train_semantic
from tests.conftest import shared_data

N_PHOTOS = 24
FUSED = "lite01"
SMALL = FitSettings(epochs=5, patience=5, batch_size=16, learning_rate=3e-3, seed=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    images = shared_data("mirflickr25k/images")
    rows = list(csv.reader(shared_data("mirflickr25k/labels.csv").read_text(encoding="utf-8").splitlines()))
    people = rows[0].index("people")
    base = tmp_path_factory.mktemp("files")
    for row in rows[1 : N_PHOTOS + 1]:
        folder = base / "src" / ("people" if row[people] == "1" else "nopeople")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / row[0]).write_bytes((images / row[0]).read_bytes())
    c = Corpus.create(base / "corpus")
    import_folder(c, base / "src")
    featurize_images(c, "efficientnet-lite0", workers=1)
    featurize_images(c, "efficientnet-lite1", workers=1)
    fuse_feature_sets(c, ["efficientnet-lite0", "efficientnet-lite1"], FUSED)
    return c


def _stored(corpus: Corpus, feature_set: str, origin: str) -> np.ndarray:
    (pid,) = corpus.conn.execute(
        "SELECT photo_id FROM files WHERE origin LIKE ?", (f"%/{origin}",)
    ).fetchone()
    fs = feature_store.open_feature_set(corpus, feature_set)
    return np.asarray(fs.matrix()[fs.rows_for(np.array([pid]))[0]], dtype=np.float32)


def test_fused_set_resolves_to_both_backbones(corpus: Corpus) -> None:
    assert feature_blocks(FUSED, corpus) == [
        FeatureBlock("efficientnet-lite0", False),
        FeatureBlock("efficientnet-lite1", False),
    ]
    assert feature_blocks("efficientnet-lite2.logits") == [FeatureBlock("efficientnet-lite2", True)]
    with pytest.raises(LearnError, match="only `photocorpus featurize` can compute"):
        feature_blocks("vgg19", corpus)
    with pytest.raises(LearnError, match="only `photocorpus featurize` can compute"):
        feature_blocks(FUSED)  # without the corpus the fusion's inputs are unknown


@pytest.mark.parametrize("feature_set", ["efficientnet-lite1", "efficientnet-lite1.logits", FUSED])
def test_file_features_equal_the_stored_rows(corpus: Corpus, tmp_path: Path, feature_set: str) -> None:
    images = shared_data("mirflickr25k/images")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8not a jpeg")
    files = [images / "im1.jpg", broken, tmp_path / "missing.jpg", images / "im5.jpg"]
    rows, errors = image_files_features(files, feature_set, corpus=corpus)
    assert [pos for pos, _ in errors] == [1, 2]  # recorded per file, the others still computed
    none_read, _ = image_files_features([broken], feature_set, corpus=corpus)
    assert none_read.shape == (0, rows.shape[1])  # no readable file: no rows, still the set's width
    assert rows.shape[0] == 2
    for row, origin in zip(rows, ["im1.jpg", "im5.jpg"], strict=True):
        stored = _stored(corpus, feature_set, origin)  # float16 in the store
        assert row.shape == stored.shape
        assert np.allclose(row, stored, atol=2e-2 * float(np.abs(stored).max()), rtol=1e-2)
        assert float(row @ stored / np.linalg.norm(row) / np.linalg.norm(stored)) > 0.999


def test_predict_and_image_search_with_lite1_and_fused_models(corpus: Corpus) -> None:
    images = shared_data("mirflickr25k/images")
    train_classifier(corpus, "label", name="clf-fused", image_features=FUSED, split="hash:60/20/20",
                     fit_settings=SMALL)  # fmt: skip
    preds = predict_paths(corpus, "clf-fused", [images / "im12.jpg"], top_k=2)
    assert preds[0].error is None and {lab for lab, _ in preds[0].labels} == {"people", "nopeople"}
    # a semantic model on Lite1: captions are the photos' label names, enough to train a map
    ids = feature_store.open_feature_set(corpus, "efficientnet-lite1").photo_ids()
    labels = photo_meta(corpus, ids.tolist()).labels
    from photocorpus.learn.text_space import minilm_encoder

    vectors = minilm_encoder()([f"a photo with {label}" for label in labels])
    feature_store.append_rows(corpus, "text.minilm", ids, vectors, model_id="all-MiniLM-L6-v2 (labels)")
    train_semantic(corpus, "minilm", name="sem-lite1", image_features="efficientnet-lite1",
                   split="hash:60/20/20", fit_settings=SMALL)  # fmt: skip
    searcher = Searcher(corpus, model="sem-lite1")
    hits = searcher.search_image(images / "im7.jpg", k=3)
    (origin,) = corpus.conn.execute(
        "SELECT origin FROM files WHERE photo_id = ?", (hits[0].photo_id,)
    ).fetchone()
    assert Path(origin).name == "im7.jpg"
