"""Feature fusion (issue #20): rows line up by photo, each block has unit norm, photos missing from an
input are left out, re-runs resume, changed inputs and bad names are refused, and a fused set is an
ordinary set (features list, train classifier)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import photocorpus as pc
from photocorpus import feature_store
from photocorpus.cli import app
from photocorpus.corpus import Corpus
from photocorpus.features import fusion
from photocorpus.features.fusion import FuseError, fuse_feature_sets
from photocorpus.records import PhotoRecord


@pytest.fixture()
def corpus(tmp_path: Path):
    c = Corpus.create(tmp_path / "c")
    yield c
    c.close()


def _photos(corpus: Corpus, n: int, labels: list[str] | None = None) -> np.ndarray:
    return np.array(
        corpus.add_photos([PhotoRecord("test", str(i), [(labels or ["all"])[i % len(labels or ["all"])]])
                           for i in range(n)]),
        dtype=np.int64,
    )  # fmt: skip


def test_rows_line_up_by_photo_with_unit_norm_blocks_and_missing_photos_left_out(corpus: Corpus) -> None:
    ids = _photos(corpus, 6)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 3)).astype(np.float32) * 10
    b = rng.normal(size=(5, 4)).astype(np.float32)
    b[2] = 0.0  # a zero row stays zero
    # a: all six photos, in reverse order; b: five (not ids[5]), in its own order
    feature_store.append_rows(corpus, "a", ids[::-1], a, model_id="ma", dtype="float32")
    b_ids = ids[[3, 0, 4, 1, 2]]
    feature_store.append_rows(corpus, "b", b_ids, b, model_id="mb", dtype="float32")

    report = fuse_feature_sets(corpus, ["a", "b"], "ab")
    assert (report.added, report.already, report.missing, report.dims) == (5, 0, 1, 7)
    fs = feature_store.open_feature_set(corpus, "ab")
    assert fs.dims == 7 and fs.rows == 5 and fs.dtype == "float32"
    got = dict(zip(fs.photo_ids().tolist(), np.asarray(fs.matrix()), strict=True))
    assert set(got) == set(ids[:5].tolist())
    for pid in ids[:5].tolist():
        ra = a[list(ids[::-1]).index(pid)]
        rb = b[list(b_ids).index(pid)]
        np.testing.assert_allclose(got[pid][:3], ra / np.linalg.norm(ra), rtol=1e-6)
        assert np.linalg.norm(got[pid][:3]) == pytest.approx(1.0, abs=1e-6)
        if rb.any():
            np.testing.assert_allclose(got[pid][3:], rb / np.linalg.norm(rb), rtol=1e-6)
        else:
            assert not got[pid][3:].any()
    inputs = fs.params["fusion"]["inputs"]
    assert [(i["name"], i["model_id"], i["dims"]) for i in inputs] == [("a", "ma", 3), ("b", "mb", 4)]
    assert fs.params["fusion"]["blocks"] == "l2-normalised blocks"


def test_rerun_fuses_only_new_photos_in_bounded_chunks(corpus: Corpus, monkeypatch) -> None:
    monkeypatch.setattr(fusion, "FUSE_CHUNK_PHOTOS", 2)
    ids = _photos(corpus, 7)
    feature_store.append_rows(corpus, "a", ids[:5], np.ones((5, 2)), model_id="ma")
    feature_store.append_rows(corpus, "b", ids[:5], np.ones((5, 3)), model_id="mb")
    first = fuse_feature_sets(corpus, ["a", "b"], "ab")
    assert first.added == 5 and len(feature_store.open_feature_set(corpus, "ab").shards) == 3
    feature_store.append_rows(corpus, "a", ids[5:], np.ones((2, 2)), model_id="ma")
    feature_store.append_rows(corpus, "b", ids[5:], np.ones((2, 3)), model_id="mb")
    again = fuse_feature_sets(corpus, ["a", "b"], "ab")
    assert (again.added, again.already) == (2, 5)
    fs = feature_store.open_feature_set(corpus, "ab")
    assert sorted(fs.photo_ids().tolist()) == sorted(ids.tolist()) and fs.rows == 7


def test_refusals(corpus: Corpus) -> None:
    ids = _photos(corpus, 3)
    feature_store.append_rows(corpus, "a", ids, np.ones((3, 2)), model_id="ma")
    feature_store.append_rows(corpus, "b", ids, np.ones((3, 3)), model_id="mb")
    feature_store.append_rows(corpus, "c", ids, np.ones((3, 3)), model_id="mc")
    with pytest.raises(FuseError, match="at least two"):
        fuse_feature_sets(corpus, ["a"], "x")
    with pytest.raises(FuseError, match="one of its inputs"):
        fuse_feature_sets(corpus, ["a", "b"], "a")
    with pytest.raises(feature_store.FeatureSetNotFoundError, match="known: a, b, c"):
        fuse_feature_sets(corpus, ["a", "nope"], "x")
    fuse_feature_sets(corpus, ["a", "b"], "ab")
    with pytest.raises(FuseError, match="photocorpus features remove ab"):
        fuse_feature_sets(corpus, ["a", "c"], "ab")  # same dims, other inputs
    feature_store.append_rows(corpus, "plain", ids, np.ones((3, 5)), model_id="m")
    with pytest.raises(FuseError, match="remove it first"):
        fuse_feature_sets(corpus, ["a", "b"], "plain")  # not a fusion at all


def test_a_fused_set_is_listed_and_trains_a_classifier(tmp_path: Path) -> None:
    with Corpus.create(tmp_path / "c") as corpus:
        ids = _photos(corpus, 60, labels=["cats", "dogs"])
        rng = np.random.default_rng(1)
        y = np.arange(60) % 2
        a = rng.normal(size=(60, 4)) + y[:, None] * 3  # separable: the classifier must learn from it
        b = rng.normal(size=(60, 3))
        feature_store.append_rows(corpus, "a", ids, a, model_id="ma")
        feature_store.append_rows(corpus, "b", ids, b, model_id="mb")
    result = CliRunner().invoke(app, ["features", "fuse", "a", "b", "--name", "ab", "--corpus",
                                      str(tmp_path / "c"), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "60 photos fused (7 dims" in result.output
    listed = CliRunner().invoke(app, ["features", "list", "--corpus", str(tmp_path / "c"), "--json"])
    assert '"name": "ab"' in listed.output
    report = pc.train_classifier(tmp_path / "c", "label", image_features="ab", splits="hash:60/20/20",
                                 epochs=30, patience=30, learning_rate=0.05, seed=0)  # fmt: skip
    assert report.metrics["test"]["accuracy"] > 0.8
    again = pc.fuse_features(tmp_path / "c", ["a", "b"], name="ab")
    assert (again.added, again.already) == (0, 60)
