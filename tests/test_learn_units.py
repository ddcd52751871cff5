"""Learn/search building blocks without trained models: splits, metrics, queries, label files, the
faiss index on clustered synthetic data, and the gallery's escaping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from photocorpus.corpus import Corpus
from photocorpus.errors import ConfigError
from photocorpus.learn.dataset import LearnError, PhotoMeta, match_label_file, read_label_file
from photocorpus.learn.index import IndexSource, build_index, ensure_index, ivf_cells, recall_at_k
from photocorpus.learn.metrics import average_precision, classification_report, precision_at_k
from photocorpus.learn.query import describe_query, parse_query, query_vector
from photocorpus.learn.splits import assign_splits, parse_split_spec
from photocorpus.records import PhotoRecord


def _records(n: int, source: str = "mirflickr") -> list[PhotoRecord]:
    return [PhotoRecord(source=source, source_id=str(i), labels=["x"]) for i in range(1, n + 1)]


# ------------------------------------------------------------------------------------------- splits
def test_hash_split_is_stable_and_has_the_asked_proportions(tmp_path: Path) -> None:
    a = Corpus.create(tmp_path / "a")
    ids_a = a.add_photos(_records(4000))
    b = Corpus.create(tmp_path / "b")
    # same photos, inserted in reverse order and mixed with others: same splits by (source, source_id)
    ids_b = b.add_photos(list(reversed(_records(4000))) + _records(50, source="folder"))
    split_a = assign_splits(a, ids_a, "hash:80/20")
    by_sid_b = dict(zip(reversed(range(1, 4001)), assign_splits(b, ids_b[:4000], "hash:80/20"), strict=True))
    assert all(split_a[i] == by_sid_b[i + 1] for i in range(4000))
    counts = {s: int((split_a == s).sum()) for s in ("train", "val", "test")}
    assert abs(counts["test"] / 4000 - 0.20) < 0.025
    assert abs(counts["val"] / 4000 - 0.10) < 0.02  # 1/8 of the 80 % carved out for early stopping
    # the test part of 80/20 does not depend on the val carve-out
    three = assign_splits(a, ids_a, "hash:80/10/10")
    assert set(np.flatnonzero(three == "test")) <= set(np.flatnonzero(split_a == "test"))
    a.close()
    b.close()


def test_curate_splits_win_under_auto_and_unsplit_photos_are_excluded(tmp_path: Path) -> None:
    c = Corpus.create(tmp_path / "c")
    ids = c.add_photos(_records(6))
    with c.transaction() as conn:
        for pid, split in zip(ids[:4], ["train", "val", "test", None], strict=True):
            conn.execute(
                "INSERT INTO curation (photo_id, split, updated_at) VALUES (?, ?, 'now')", (pid, split)
            )
    assert assign_splits(c, ids, "auto").tolist() == ["train", "val", "test", "", "", ""]
    assert len(assign_splits(c, ids, "hash:50/50")) == 6
    c.close()


@pytest.mark.parametrize("bad", ["hash:80/10", "hash:80/30/10", "random", "hash:a/b"])
def test_bad_split_specs_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_split_spec(bad)


# ------------------------------------------------------------------------------------------ metrics
def test_average_precision_matches_scikit_learn_on_untied_scores() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.standard_normal(200)
        relevant = rng.random(200) < 0.15
        relevant[0] = True
        assert average_precision(scores, relevant) == pytest.approx(
            average_precision_score(relevant, scores), abs=1e-12
        )
    assert np.isnan(average_precision(np.ones(5), np.zeros(5)))


def test_precision_at_k_counts_unjudged_as_not_relevant() -> None:
    assert precision_at_k([True, None, False, True, None, True], 5) == (0.4, 2)


def test_classification_report() -> None:
    rep = classification_report(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), ["a", "b"])
    assert rep["accuracy"] == pytest.approx(3 / 5)
    assert rep["per_class_accuracy"] == {"a": 0.5, "b": pytest.approx(2 / 3)}
    assert rep["confusion_matrix"] == [[1, 1], [1, 2]]


# ------------------------------------------------------------------------------------------ queries
def test_query_grammar() -> None:
    terms = parse_query('beach^2 +sunset -people^0.5 -"new york"')
    assert [(t.text, t.weight) for t in terms] == [
        ("beach", 2.0),
        ("sunset", 1.0),
        ("people", -0.5),
        ("new york", -1.0),
    ]
    assert [t.text for t in parse_query("skyline at night")] == ["skyline at night"]
    assert [t.text for t in parse_query('"-5 degrees" +snow')] == ["-5 degrees", "snow"]
    assert describe_query(parse_query("beach +sunset -people^0.5")) == "beach +sunset -people^0.5"


@pytest.mark.parametrize("bad", ["", "   ", "-people", "beach + sunset", "beach^0", '"open', "x" * 1001])
def test_bad_queries_raise_clear_errors(bad: str) -> None:
    with pytest.raises(LearnError):
        parse_query(bad)


def test_query_vector_adds_and_subtracts_unit_term_vectors() -> None:
    table = {"a": np.array([3.0, 0.0, 0.0]), "b": np.array([0.0, 2.0, 0.0]), "c": np.array([0.0, 0.0, 5.0])}

    def encode(texts: list[str]) -> np.ndarray:
        return np.stack([table[t] for t in texts])

    q = query_vector(parse_query("a +b -c^0.5"), encode)
    expected = np.array([1.0, 1.0, -0.5]) / np.linalg.norm([1.0, 1.0, -0.5])
    assert np.allclose(q, expected, atol=1e-6)
    with pytest.raises(LearnError, match="cancel"):
        query_vector(parse_query("a -a"), encode)


# -------------------------------------------------------------------------------------- label files
def test_label_file_parsing_and_matching(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("image,dog,sea\nim1.jpg,1,0\nim2.jpg,0,1\nim10.jpg,1,1\n", encoding="utf-8")
    lf = read_label_file(path)
    assert lf.names == ["dog", "sea"] and lf.matrix.shape == (3, 2)
    meta = PhotoMeta(
        ids=np.array([7, 8, 9]),
        source_ids=["10", "nyc/im2", "other"],
        labels=["", "", ""],
        captions=["", "", ""],
        tags=[[], [], []],
        paths=[None, None, None],
        origins=["/data/mirflickr/im10.jpg", "/x/nyc/im2.jpg", "/x/other.jpg"],
    )
    matrix, matched = match_label_file(lf, meta)
    assert matched.tolist() == [True, True, False]
    assert matrix.tolist() == [[1, 1], [0, 1], [0, 0]]
    for bad, message in [
        ("image,dog\nim1.jpg,2\n", "must be 0 or 1"),
        ("image,dog\nim1.jpg,1,0\n", "expected 2 columns"),
        ("image,dog,dog\nim1.jpg,1,0\n", "unique"),
        ("image,dog\nim1.jpg,1\nim1.jpg,0\n", "listed twice"),
    ]:
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(LearnError, match=message):
            read_label_file(path)


# -------------------------------------------------------------------------------------------- index
def _clustered(n: int, dims: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around ``clusters`` fixed centres (the same centres whatever the seed)."""
    centres = np.random.default_rng(0).standard_normal((clusters, dims)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dims)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_reaches_the_recall_target_against_exact_search(kind: str) -> None:
    x = _clustered(20_000, 64, 50, seed=1)
    ids = np.arange(1000, 21_000, dtype=np.int64)
    approx = build_index(x, ids, kind=kind, seed=0)
    exact = build_index(x, ids, kind="flat")
    assert approx.info.recall_at_10 is not None and approx.info.recall_at_10 >= 0.95
    queries = _clustered(200, 64, 50, seed=9)  # fresh points, not the calibration sample
    _, a = approx.search(queries, 10)
    _, e = exact.search(queries, 10)
    assert recall_at_k(a, e) >= 0.95
    assert set(np.unique(a)) <= set(ids.tolist())


def test_index_is_saved_and_updated_incrementally(tmp_path: Path) -> None:
    x = _clustered(3000, 32, 10, seed=2)
    state = {"ids": np.arange(1, 2001, dtype=np.int64), "version": "1"}
    embedded: list[int] = []

    def embed(ids: np.ndarray) -> np.ndarray:
        embedded.append(len(ids))
        return x[ids - 1]

    source = IndexSource(
        name="test",
        fingerprint="model-a",
        dims=32,
        photo_ids=lambda: state["ids"],
        embed=embed,
        signature=lambda: state["version"],
    )
    folder = tmp_path / "index"
    index, action = ensure_index(folder, source)
    assert action == "built" and index.info.kind == "flat" and index.info.count == 2000
    assert ensure_index(folder, source)[1] == "loaded"  # from disk, nothing embedded again
    assert embedded == [2000]
    state.update(ids=np.arange(101, 3001, dtype=np.int64), version="2")  # 100 removed, 1000 added
    index, action = ensure_index(folder, source)
    assert action == "updated" and embedded == [2000, 1000] and index.info.count == 2900
    scores, found = index.search(x[50:51], 5)  # photo 51 was removed: never returned
    assert 51 not in found[0].tolist()
    scores, found = index.search(x[2500:2501], 1)
    assert found[0, 0] == 2501 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    meta = json.loads((folder / "index.json").read_text())
    assert meta["count"] == 2900 and (folder / meta["file"]).is_file()
    # a changed model rebuilds from scratch; exceeding exact_max under auto switches to IVF
    source.fingerprint = "model-b"
    assert ensure_index(folder, source, exact_max=100_000)[1] == "built"
    index, action = ensure_index(folder, source, exact_max=1000)
    assert action == "built" and index.info.kind == "ivf"
    assert len(list(folder.glob("index-*.faiss"))) == 1  # old index files are cleaned up


def test_ivf_cell_count() -> None:
    assert ivf_cells(1_000_000) == 2048  # 2 * sqrt(n), as a power of two
    assert ivf_cells(3000) == 3000 // 39  # faiss wants at least 39 training points per cell
    assert ivf_cells(10) == 16


# ------------------------------------------------------------------------------------------ gallery
def test_gallery_escapes_untrusted_text(tmp_path: Path) -> None:
    from photocorpus.learn.gallery import gallery_path, render_gallery
    from photocorpus.learn.search import Hit

    c = Corpus.create(tmp_path / "c")
    evil = "<script>alert(1)</script>"
    hit = Hit(1, 0.5, 1, f"id{evil}", f"lab{evil}", f"cap {evil}", str(c.root / "images/a/00000/x.jpg"), "m")
    page = gallery_path(c, f"../../{evil}")
    assert page.parent == c.root / "reports" / "search" and "<" not in page.name and ".." not in page.name
    text = render_gallery([hit], title=f"Search: {evil}", subtitle=evil, page=page)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "src='../../images/a/00000/x.jpg'" in text
    c.close()


@pytest.mark.parametrize(
    ("images_url", "shown"),
    [
        ("s3://bkt/pre", "https://bkt.s3.amazonaws.com/pre/nyc/00000/1.jpg"),
        ("gs://bkt/pre", "https://storage.googleapis.com/bkt/pre/nyc/00000/1.jpg"),
        ("memory://bkt/pre", None),  # no address a browser can open: the object is named, not shown
    ],
)
def test_gallery_shows_store_images_by_their_browser_address(
    tmp_path: Path, images_url: str, shown: str | None
) -> None:
    """A hit on an object store links its https address, as the explore report does; the catalog row,
    not the hit's URL text, decides which object it is."""
    from photocorpus.config import Settings, StorageSettings
    from photocorpus.corpus import StoredFile
    from photocorpus.learn.gallery import write_gallery
    from photocorpus.learn.search import Hit

    with Corpus.create(tmp_path / "c", Settings(storage=StorageSettings(images_url=images_url))) as c:
        (pid,) = c.add_photos([PhotoRecord("t", "1", ["nyc"], caption="x")])
        rel = "images/nyc/00000/1.jpg"
        c.commit_file(pid, StoredFile(rel, "0" * 64, 10, 10, 100, "JPEG"))
        hit = Hit(1, 0.9, pid, "1", "nyc", "x", c.image_url(rel), "m")
        text = write_gallery(c, [hit], query="q", subtitle="s").read_text(encoding="utf-8")
    if shown is None:
        assert "<img" not in text and f"class='missing'>{images_url}/nyc/00000/1.jpg<" in text
    else:
        assert f"<img loading='lazy' src='{shown}'" in text


def test_report_queries_rank_frequent_tags_by_count_then_name(tmp_path: Path) -> None:
    from photocorpus.learn.report_search import QUERIES, report_queries

    records = [
        PhotoRecord("t", "1", ["nyc"], tags=["Bridge", "x", "ferry"], hashtags=["bridge"]),
        PhotoRecord("t", "2", ["nyc"], tags=["bridge", "ferry", "y" * 41], hashtags=["ZOO"]),
        PhotoRecord("t", "3", ["bronx"], tags=["zoo", "apple"], hashtags=["apple"]),
        PhotoRecord("t", "4", ["nyc"], tags=["ferry"]),
    ]
    with Corpus.create(tmp_path / "c") as corpus:
        corpus.add_photos(records)
        got = report_queries(corpus, top_terms=3)
    paper = [q for _, q in QUERIES]
    assert got[: len(paper)] == paper
    rest = got[len(paper) :]
    # labels by photo count, then tags/hashtags lowercased and counted together: bridge 3, ferry 3,
    # apple 2, zoo 2 -> the top 3 by count then name; one-letter and 41-letter tags are left out.
    assert rest == ["nyc", "bronx", "bridge", "ferry", "apple"][: len(rest)]
    assert len(rest) == 5


def test_loading_a_model_of_another_kind_or_format_is_refused_clearly(tmp_path: Path) -> None:
    import torch

    from photocorpus.learn import registry
    from photocorpus.learn.classifier import load_classifier
    from photocorpus.learn.semantic import load_semantic

    def writer(fmt: int):
        def write(folder: Path) -> None:
            (folder / "model.json").write_text(json.dumps({"format": fmt}), encoding="utf-8")
            torch.save({"w": torch.zeros(2)}, folder / "model.pt")

        return write

    with Corpus.create(tmp_path / "c") as corpus:
        common = {"feature_set": "efficientnet-lite0", "settings": {}, "metrics": {}}
        registry.save_model(corpus, name="sem", kind="semantic", write=writer(1), **common)
        registry.save_model(corpus, name="old", kind="classifier", write=writer(-7), **common)
        with pytest.raises(LearnError, match="'sem' is a semantic model, not a classifier model"):
            load_classifier(corpus, "sem")
        with pytest.raises(LearnError, match="'old' is a classifier model, not a semantic model"):
            load_semantic(corpus, "old")
        with pytest.raises(LearnError, match="'old' has format -7; train it again"):
            load_classifier(corpus, "old")
        # search reads a semantic model's description without torch, with the same checks
        from photocorpus.learn.semantic_handle import open_semantic

        assert open_semantic(corpus, "sem").entry.name == "sem"
        with pytest.raises(LearnError, match="'old' is a classifier model, not a semantic model"):
            open_semantic(corpus, "old")
        registry.save_model(corpus, name="sem-old", kind="semantic", write=writer(-3), **common)
        with pytest.raises(LearnError, match="'sem-old' has format -3; train it again"):
            open_semantic(corpus, "sem-old")
