"""k-means, the choice of k, the catalog's cluster tables and the per-cluster summaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from photocorpus.explore.cluster import (
    FLAT_SILHOUETTE_TOLERANCE,
    WEAK_SILHOUETTE,
    auto_k_is_weak,
    choose_k,
    ensure_clusters,
    kmeans,
    load_run,
    summarize_clusters,
)
from photocorpus.explore.errors import ExploreError
from tests.test_explore_embed import blobs, corpus_with_features


@pytest.mark.parametrize("faiss_min_rows", [0, 10**9], ids=["faiss", "minibatch"])
def test_kmeans_recovers_separated_groups(faiss_min_rows: int) -> None:
    x, truth = blobs(n_per=80, centers=6)
    result = kmeans(x, 6, seed=0, faiss_min_rows=faiss_min_rows)
    assert result.method == ("faiss-kmeans" if faiss_min_rows == 0 else "minibatch-kmeans")
    assert normalized_mutual_info_score(truth, result.labels) > 0.98
    sizes = np.bincount(result.labels)
    assert (np.diff(sizes) <= 0).all()  # cluster 0 is the largest
    own = np.linalg.norm(x - result.centroids[result.labels], axis=1)
    np.testing.assert_allclose(result.distances, own, rtol=1e-3, atol=1e-3)
    again = kmeans(x, 6, seed=0, faiss_min_rows=faiss_min_rows)
    np.testing.assert_array_equal(result.labels, again.labels)


def test_auto_k_finds_the_number_of_groups() -> None:
    x, _ = blobs(n_per=50, centers=8, seed=3)
    k, scores = choose_k(x, seed=0)
    assert k == 8
    assert set(scores) == {4, 5, 6, 8, 10, 12, 15, 20, 25, 30}
    assert scores[8] == max(scores.values())


def test_clusters_are_stored_in_the_catalog_and_reused(tmp_path: Path) -> None:
    x, truth = blobs(n_per=40, centers=5)
    corpus, ids = corpus_with_features(tmp_path, x)
    calls = []

    def reduced() -> np.ndarray:
        calls.append(1)
        return x

    run = ensure_clusters(corpus, "cnn", ids, "auto", z=reduced, seed=0)
    assert run.run == "cnn/k5" and run.k == 5 and not run.reused
    rows = corpus.conn.execute(
        "SELECT photo_id, cluster, distance FROM clusters WHERE run = 'cnn/k5'"
    ).fetchall()
    assert len(rows) == len(ids)
    stored = {r[0]: r[1] for r in rows}
    assert normalized_mutual_info_score(truth, [stored[int(i)] for i in ids]) > 0.98
    meta = corpus.conn.execute("SELECT feature_set, k, method, photos, params FROM cluster_runs").fetchone()
    assert tuple(meta[:4]) == ("cnn", 5, "minibatch-kmeans", len(ids))
    assert '"k_request": "auto"' in meta[4] and '"silhouettes"' in meta[4]

    again = ensure_clusters(corpus, "cnn", ids[::-1], "auto", z=reduced, seed=0)
    assert again.reused and len(calls) == 1
    np.testing.assert_array_equal(again.photo_ids, ids[::-1])  # returned in the order asked for
    np.testing.assert_array_equal(again.clusters, run.clusters[::-1])

    fixed = ensure_clusters(corpus, "cnn", ids, 3, z=reduced, seed=0)
    assert fixed.run == "cnn/k3" and not fixed.reused and len(calls) == 2
    assert np.bincount(fixed.clusters).size == 3
    loaded = load_run(corpus, "cnn/k3")
    assert loaded is not None and loaded.k == 3 and len(loaded.photo_ids) == len(ids)
    # Deleting a photo removes its cluster rows with it.
    with corpus.transaction() as conn:
        conn.execute("DELETE FROM photos WHERE id = ?", (int(ids[0]),))
    assert (
        corpus.conn.execute("SELECT COUNT(*) FROM clusters WHERE photo_id = ?", (int(ids[0]),)).fetchone()[0]
        == 0
    )


def test_bad_k_is_refused(tmp_path: Path) -> None:
    x, _ = blobs(n_per=5, centers=2)
    corpus, ids = corpus_with_features(tmp_path, x)
    with pytest.raises(ExploreError, match="'auto' or an integer"):
        ensure_clusters(corpus, "cnn", ids, "many", z=lambda: x)
    with pytest.raises(ExploreError, match="between 2 and the number of photos"):
        ensure_clusters(corpus, "cnn", ids, 50, z=lambda: x)


def test_summaries_rank_distinctive_tags_and_list_the_photos_nearest_the_centre() -> None:
    clusters = np.array([0, 0, 0, 1, 1, 1, 1])
    distances = np.array([0.5, 0.1, 0.3, 0.9, 0.2, 0.4, 0.1], dtype=np.float32)
    photo_ids = np.array([10, 11, 12, 20, 21, 22, 23])
    terms = [
        ["#nyc", "pizza"], ["#nyc", "pizza"], ["#nyc"],
        ["#nyc", "bridge"], ["#nyc", "bridge"], ["#nyc", "bridge"], ["#nyc"],
    ]  # fmt: skip
    imagenet = ["pizza", "pizza", "plate", "pier", "pier", None, "pier"]
    summaries = summarize_clusters(
        clusters, distances, photo_ids, imagenet=imagenet, categories=imagenet, terms=terms, gallery_size=3
    )
    assert [s.size for s in summaries] == [3, 4]
    assert summaries[0].closest == [11, 12, 10]
    assert summaries[1].closest == [23, 21, 22]
    assert summaries[0].top_terms[0][0] == "pizza" and summaries[1].top_terms[0][0] == "bridge"
    # "#nyc" is in every cluster: it ranks below each cluster's own tag.
    for s in summaries:
        ranked = [t for t, _ in s.top_terms]
        assert ranked.index("#nyc") > 0
    assert summaries[0].top_labels == [("pizza", 2), ("plate", 1)]
    assert summaries[1].top_labels == [("pier", 3)]


def test_flat_silhouettes_keep_a_small_k_and_say_the_choice_is_weak(tmp_path: Path) -> None:
    """Photos with no group structure (uniform noise) give flat, low silhouettes: the choice must not
    drift to the top of the grid, and the run must record that it is weak (issue #21)."""
    x = np.random.default_rng(5).normal(size=(600, 50)).astype(np.float32)
    k, scores = choose_k(x, seed=0)
    top = max(scores.values())
    assert top < WEAK_SILHOUETTE
    assert k == min(c for c, v in scores.items() if v >= top - FLAT_SILHOUETTE_TOLERANCE)
    assert k < max(scores)  # not the top of the grid
    corpus, ids = corpus_with_features(tmp_path, x)
    run = ensure_clusters(corpus, "cnn", ids, "auto", z=lambda: x, seed=0)
    assert run.params["auto_k_weak"] is True
    clear, _ = blobs(n_per=50, centers=8, seed=3)
    _, clear_scores = choose_k(clear, seed=0)
    assert not auto_k_is_weak(clear_scores)
