"""The feature store: append-only shards, compaction, memory maps, normalised views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from photocorpus import feature_store
from photocorpus.corpus import Corpus


@pytest.fixture()
def corpus(tmp_path: Path):
    c = Corpus.create(tmp_path / "c")
    yield c
    c.close()


def test_append_compact_and_read_back(corpus: Corpus) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 8)).astype(np.float32)
    b = rng.normal(size=(3, 8)).astype(np.float32)
    feature_store.append_rows(corpus, "toy", [10, 11, 12, 13, 14], a, model_id="m")
    fs = feature_store.append_rows(corpus, "toy", [20, 21, 22], b, model_id="m")
    assert fs.rows == 8 and len(fs.shards) == 2
    assert fs.photo_ids().tolist() == [10, 11, 12, 13, 14, 20, 21, 22]
    np.testing.assert_allclose(fs.matrix(), np.vstack([a, b]).astype(np.float16))
    assert feature_store.featurized_photo_ids(corpus, "toy") == {10, 11, 12, 13, 14, 20, 21, 22}
    assert fs.rows_for([21, 10, 99]).tolist() == [6, 0, -1]

    compacted = feature_store.compact(corpus, "toy")
    assert len(compacted.shards) == 1
    mat = compacted.matrix()
    assert isinstance(mat, np.memmap)
    np.testing.assert_array_equal(np.asarray(mat), np.vstack([a, b]).astype(np.float16))
    files = sorted(p.name for p in corpus.abs_path(compacted.path).iterdir())
    assert len(files) == 2  # the old shards are gone
    norms = np.linalg.norm(compacted.normalized(), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_refuses_mismatched_rows(corpus: Corpus) -> None:
    feature_store.append_rows(corpus, "toy", [1], np.ones((1, 4)), model_id="m")
    with pytest.raises(ValueError, match="4 dims"):
        feature_store.append_rows(corpus, "toy", [2], np.ones((1, 5)), model_id="m")
    with pytest.raises(ValueError, match="photo ids"):
        feature_store.append_rows(corpus, "toy", [2, 3], np.ones((1, 4)), model_id="m")
    with pytest.raises(feature_store.FeatureSetNotFoundError, match="photocorpus featurize"):
        feature_store.open_feature_set(corpus, "missing")


def test_unregistered_shard_is_overwritten_by_the_next_append(corpus: Corpus) -> None:
    feature_store.append_rows(corpus, "toy", [1], np.ones((1, 4)), model_id="m")
    folder = corpus.abs_path(feature_store.feature_dir("toy"))
    # What a crash between the shard's rename and its registration leaves behind:
    np.save(folder / "shard-00001.npy", np.full((2, 4), 7.0, dtype=np.float16))
    np.save(folder / "shard-00001.ids.npy", np.array([5, 6], dtype=np.int64))
    fs = feature_store.append_rows(corpus, "toy", [2], np.full((1, 4), 3.0), model_id="m")
    assert fs.photo_ids().tolist() == [1, 2]
    assert np.asarray(fs.matrix())[1].tolist() == [3.0, 3.0, 3.0, 3.0]
