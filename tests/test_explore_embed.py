"""2-D maps: determinism, neighbourhood preservation, kNN, and the stored map feature set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from photocorpus import feature_store
from photocorpus.corpus import Corpus
from photocorpus.explore import embed2d
from photocorpus.explore.embed2d import MapParams, embed_2d, ensure_map, nearest_neighbors, reduce_pca
from photocorpus.explore.errors import ExploreError
from photocorpus.records import PhotoRecord


def blobs(n_per: int = 60, centers: int = 5, dims: int = 64, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian blobs (the true groups are known, so tests need no expected map)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 6.0, size=(centers, dims))
    labels = np.repeat(np.arange(centers), n_per)
    return (means[labels] + rng.normal(0, 1.0, size=(len(labels), dims))).astype(np.float32), labels


def corpus_with_features(tmp_path: Path, x: np.ndarray, name: str = "cnn") -> tuple[Corpus, np.ndarray]:
    corpus = Corpus.create(tmp_path / "c")
    ids = np.array(
        corpus.add_photos([PhotoRecord("test", str(i), ["all"]) for i in range(len(x))]), dtype=np.int64
    )
    feature_store.append_rows(corpus, name, ids, x, model_id="synthetic")
    return corpus, ids


def test_the_same_inputs_give_the_same_map_and_another_seed_another() -> None:
    x, _ = blobs()
    z = reduce_pca(x, 20, seed=0)
    first = embed_2d(z, MapParams(seed=3))
    again = embed_2d(reduce_pca(x, 20, seed=0), MapParams(seed=3))
    assert first.shape == (len(x), 2) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    other = embed_2d(z, MapParams(seed=4))
    assert not np.allclose(first, other)


def test_tsne_keeps_groups_together_and_trustworthiness_says_so() -> None:
    x, labels = blobs()
    z = reduce_pca(x, 20, seed=0)
    coords = embed_2d(z, MapParams())
    # Each point's 5 nearest map neighbours belong to its own blob.
    idx, _ = nearest_neighbors(coords, 5)
    assert (labels[idx] == labels[:, None]).mean() > 0.97
    good = embed2d.trustworthiness_on_sample(z, coords)
    shuffled = embed2d.trustworthiness_on_sample(z, np.random.default_rng(0).normal(size=coords.shape))
    assert good > 0.9 > shuffled + 0.2


def test_pca_map_is_the_first_two_components() -> None:
    x, _ = blobs()
    z = reduce_pca(x, 10, seed=0)
    coords = embed_2d(z, MapParams(method="pca"))
    np.testing.assert_array_equal(coords, z[:, :2])
    assert z[:, 0].var() >= z[:, 1].var() >= z[:, 2].var()


def test_reduce_pca_fitted_on_a_sample_projects_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = blobs(n_per=100)
    monkeypatch.setattr(embed2d, "PCA_FIT_MAX_ROWS", 200)  # fit on 200 of 500 rows, apply in blocks
    a = reduce_pca(x.astype(np.float16), 8, seed=5)
    b = reduce_pca(x.astype(np.float16), 8, seed=5)
    assert a.shape == (500, 8) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    # Normalised rows: every projected row has norm <= 1 (a projection of a unit vector, centred).
    assert np.linalg.norm(a, axis=1).max() < 2.0


def test_nearest_neighbors_exact_and_hnsw_agree_with_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(800, 16)).astype(np.float32)
    z[1] = z[0]  # an exact duplicate must not hide the row itself from... itself
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    truth = np.argsort(d2, axis=1, kind="stable")[:, :10]
    idx, dist = nearest_neighbors(z, 10)
    assert not (idx == np.arange(len(z))[:, None]).any()
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, truth, strict=True)]) > 0.99
    assert (np.diff(dist, axis=1) >= -1e-5).all()
    assert 1 in idx[0] and 0 in idx[1]
    monkeypatch.setattr(embed2d, "EXACT_KNN_MAX_ROWS", 100)  # force HNSW
    approx, _ = nearest_neighbors(z, 10)
    assert not (approx == np.arange(len(z))[:, None]).any()
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, truth, strict=True)]) > 0.9


def test_map_is_stored_as_a_feature_set_and_reused(tmp_path: Path) -> None:
    x, _ = blobs()
    corpus, ids = corpus_with_features(tmp_path, x)
    calls = []

    def reduced() -> np.ndarray:
        calls.append(1)
        return reduce_pca(x[: len(selected)], 20, seed=0)

    selected = ids
    params = MapParams(seed=2)
    first = ensure_map(corpus, "cnn", selected, params, z=reduced)
    assert not first.reused and len(calls) == 1
    fs = feature_store.open_feature_set(corpus, "cnn.map-tsne")
    assert (fs.dims, fs.dtype, fs.rows) == (2, "float32", len(ids))
    assert fs.params["map"]["seed"] == 2 and 0.5 < fs.params["trustworthiness"] <= 1.0
    np.testing.assert_array_equal(fs.photo_ids(), ids)

    again = ensure_map(corpus, "cnn", selected, params, z=reduced)
    assert again.reused and len(calls) == 1
    np.testing.assert_array_equal(again.coords, first.coords)

    selected = ids[:100]  # another photo set: recomputed and replaced, not appended
    smaller = ensure_map(corpus, "cnn", selected, params, z=reduced)
    assert not smaller.reused and len(calls) == 2
    fs = feature_store.open_feature_set(corpus, "cnn.map-tsne")
    assert fs.rows == 100 and len(fs.shards) == 1
    other_seed = ensure_map(corpus, "cnn", selected, MapParams(seed=9), z=reduced)
    assert not other_seed.reused and len(calls) == 3


def test_bad_parameters_are_refused_with_the_choices() -> None:
    with pytest.raises(ExploreError, match="tsne, umap, pca"):
        MapParams(method="mds")
    with pytest.raises(ExploreError, match="at least 4"):
        embed_2d(np.zeros((3, 5), np.float32), MapParams())
