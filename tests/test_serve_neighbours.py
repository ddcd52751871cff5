""" "More like this" on a set above the exact-search size: a saved IVF index, kept up to date.

The feature set is synthetic (well separated clusters of 25 photos each) so that which photos are
neighbours is known without computing it: a photo's neighbours are the rest of its cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from photocorpus import feature_store
from photocorpus.corpus import Corpus
from photocorpus.serve.neighbours import NeighbourIndex, neighbour_index_folder

SET = "synthetic-features"
CLUSTER = 25
CLUSTERS = 40
DIMS = 32


def cluster_rows(first_id: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIMS)) * 10
    rows = np.repeat(centres, CLUSTER, axis=0) + rng.standard_normal((clusters * CLUSTER, DIMS)) * 0.5
    return np.arange(first_id, first_id + clusters * CLUSTER, dtype=np.int64), rows


def cluster_of(photo_id: int, first_id: int = 1) -> int:
    return (photo_id - first_id) // CLUSTER


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    corpus = Corpus.create(tmp_path / "c")
    ids, rows = cluster_rows(1, CLUSTERS, seed=3)
    feature_store.append_rows(corpus, SET, ids, rows, model_id="synthetic")
    return corpus


def index_file(corpus: Corpus) -> str:
    info = json.loads((neighbour_index_folder(corpus, SET) / "index.json").read_text(encoding="utf-8"))
    assert info["kind"] == "ivf"
    return str(info["file"])


def test_a_large_set_answers_from_a_saved_ivf_index(corpus: Corpus) -> None:
    found = NeighbourIndex(exact_max_rows=100).neighbours(corpus, 30, k=10, features=SET)
    assert len(found) == 10
    assert 30 not in [pid for pid, _ in found]
    assert {cluster_of(pid) for pid, _ in found} == {cluster_of(30)}
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.9
    assert index_file(corpus)  # saved beside the corpus' other indexes


def test_a_second_server_loads_the_saved_index_instead_of_building_it(corpus: Corpus) -> None:
    first = NeighbourIndex(exact_max_rows=100).neighbours(corpus, 7, k=5, features=SET)
    saved = index_file(corpus)
    again = NeighbourIndex(exact_max_rows=100).neighbours(corpus, 7, k=5, features=SET)
    assert index_file(corpus) == saved  # a rebuild writes a new file name
    assert [pid for pid, _ in again] == [pid for pid, _ in first]


def test_rows_featurize_adds_reach_the_index_of_a_running_server(corpus: Corpus) -> None:
    index = NeighbourIndex(exact_max_rows=100)
    assert index.neighbours(corpus, 5, k=3, features=SET)
    ids, rows = cluster_rows(5001, 1, seed=11)  # a new cluster far from the others
    feature_store.append_rows(corpus, SET, ids, rows, model_id="synthetic")
    found = index.neighbours(corpus, 5001, k=10, features=SET)
    assert len(found) == 10 and all(5001 < pid < 5001 + CLUSTER for pid, _ in found)


def test_a_large_k_probes_enough_cells_to_answer_k_photos(corpus: Corpus) -> None:
    found = NeighbourIndex(exact_max_rows=100).neighbours(corpus, 12, k=600, features=SET)
    assert len(found) == 600 and len({pid for pid, _ in found}) == 600


def test_an_unknown_photo_has_no_neighbours(corpus: Corpus) -> None:
    assert NeighbourIndex(exact_max_rows=100).neighbours(corpus, 99_999, k=5, features=SET) == []
