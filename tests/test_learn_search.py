"""Learn and search end to end on real MIRFLICKR photos: semantic model, classifiers, reload, predict,
search (Python and CLI), the label-query evaluation and judged P@k.

One corpus of 360 MIRFLICKR photos is built per module: imported from the shared data (under a
``people`` / ``nopeople`` label so there is a multi-class target), featurized by the featurize stage,
and given caption embeddings of the only text MIRFLICKR has for them, the concept names.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from photocorpus import feature_store
from photocorpus.corpus import Corpus
from photocorpus.features.pipeline import featurize_images
from photocorpus.importing import import_folder
from photocorpus.learn.classifier import load_classifier, predict_corpus, predict_paths, train_classifier
from photocorpus.learn.dataset import LearnError, feature_rows, read_label_file
from photocorpus.learn.evaluate import (
    evaluate_judged_queries,
    evaluate_label_queries,
    read_judgments,
    read_queries,
    write_unjudged,
)
from photocorpus.learn.heads import FitSettings
from photocorpus.learn.query import parse_query, query_vector
from photocorpus.learn.registry import list_models
from photocorpus.learn.search import Searcher, search_text
from photocorpus.learn.semantic import load_semantic, train_semantic
from photocorpus.learn.text_space import minilm_encoder
from tests.conftest import run_cli, shared_data

N_PHOTOS = 300
SPLIT = "hash:60/20/20"
FAST = FitSettings(epochs=40, patience=5, batch_size=64, learning_rate=3e-3, seed=0)


@pytest.fixture(scope="module")
def labels_csv() -> Path:
    return shared_data("mirflickr25k/labels.csv")


@pytest.fixture(scope="module")
def mir(tmp_path_factory: pytest.TempPathFactory, labels_csv: Path) -> Corpus:
    images = shared_data("mirflickr25k/images")
    rows = list(csv.reader(labels_csv.read_text(encoding="utf-8").splitlines()))
    header, body = rows[0], rows[1 : N_PHOTOS + 1]
    people = header.index("people")
    base = tmp_path_factory.mktemp("mir")
    for row in body:
        folder = base / "src" / ("people" if row[people] == "1" else "nopeople")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / row[0]).write_bytes((images / row[0]).read_bytes())
    corpus = Corpus.create(base / "corpus")
    report = import_folder(corpus, base / "src")
    assert report.imported == N_PHOTOS
    featurize_images(corpus, "efficientnet-lite0", workers=1)
    # MIRFLICKR's text for these photos: the names of their concepts (every photo has at least one)
    ids = np.unique(feature_store.open_feature_set(corpus, "efficientnet-lite0").photo_ids())
    texts = {
        r[0]: " ".join(name for name, v in zip(header[1:], r[1:], strict=True) if v == "1") for r in body
    }
    origins = {
        pid: Path(origin).name
        for pid, origin in corpus.conn.execute("SELECT photo_id, origin FROM files").fetchall()
    }
    vectors = minilm_encoder()([texts[origins[int(i)]] for i in ids])
    feature_store.append_rows(
        corpus, "text.minilm", ids, vectors, model_id="all-MiniLM-L6-v2 (concept names)"
    )
    return corpus


@pytest.fixture(scope="module")
def semantic(mir: Corpus, labels_csv: Path):  # type: ignore[no-untyped-def]
    return train_semantic(
        mir, "minilm", loss="cosine", split=SPLIT, fit_settings=FAST, labels=read_label_file(labels_csv)
    )


def _origin(mir: Corpus, photo_id: int) -> str:
    """The file name a photo was imported from (stored names derive from the source id instead)."""
    return Path(
        mir.conn.execute("SELECT origin FROM files WHERE photo_id = ?", (photo_id,)).fetchone()[0]
    ).name


def _baseline_map(mir: Corpus, labels_csv: Path) -> float:
    """mAP of a random ranking ~ the mean share of positives among the evaluated photos."""
    lf = read_label_file(labels_csv)
    keys = {Path(o).name for (o,) in mir.conn.execute("SELECT origin FROM files")}
    rows = np.array([lf.matrix[i] for i, k in enumerate(lf.keys) if k in keys])
    return float(rows.mean(axis=0)[rows.sum(axis=0) > 0].mean())


# ------------------------------------------------------------------------------------------ semantic
def test_semantic_model_learns_concepts_and_reloads_identically(
    mir: Corpus, semantic, labels_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    metrics = semantic.metrics
    assert metrics["photos"]["train"] > 150 and metrics["photos"]["test"] > 40
    baseline = _baseline_map(mir, labels_csv)
    assert metrics["test"]["concepts"]["mAP"] > baseline + 0.15, (metrics["test"]["concepts"], baseline)
    assert metrics["test"]["mean_cosine"] > 0.4
    fs = feature_store.open_feature_set(mir, "efficientnet-lite0")
    x = feature_rows(fs, np.unique(fs.photo_ids()))
    before = semantic.model.embed(x)
    loaded = load_semantic(mir, "semantic-minilm")
    after = loaded.embed(x)
    assert np.array_equal(before, after)
    assert (
        loaded.fingerprint == json.loads((mir.root / semantic.path / "model.json").read_text())["fingerprint"]
    )
    (entry,) = [m for m in list_models(mir) if m.name == "semantic-minilm"]
    assert entry.kind == "semantic" and entry.settings["loss"] == "cosine" and entry.settings["split"]


@pytest.mark.parametrize("loss", ["infonce"])  # sigmoid-ce: tests/test_search_captions.py
def test_other_losses_train_and_beat_chance(mir: Corpus, labels_csv: Path, loss: str) -> None:
    report = train_semantic(
        mir,
        "minilm",
        loss=loss,
        head="mlp" if loss == "infonce" else "linear",
        hidden=128,
        name=f"sem-{loss}",
        split=SPLIT,
        fit_settings=FitSettings(epochs=15, patience=5, batch_size=64, learning_rate=3e-3, seed=0),
        labels=read_label_file(labels_csv),
    )
    assert report.metrics["test"]["concepts"]["mAP"] > _baseline_map(mir, labels_csv) + 0.1
    fs = feature_store.open_feature_set(mir, "efficientnet-lite0")
    x = feature_rows(fs, np.unique(fs.photo_ids())[:50])
    assert np.array_equal(report.model.embed(x), load_semantic(mir, f"sem-{loss}").embed(x))


def test_semantic_refuses_missing_text_and_bad_options(mir: Corpus) -> None:
    with pytest.raises(LearnError, match="featurize --text lda"):
        train_semantic(mir, "lda", split=SPLIT, fit_settings=FAST)
    with pytest.raises(LearnError, match="loss must be one of"):
        train_semantic(mir, "minilm", loss="hinge")


# ------------------------------------------------------------------------------------------ classifiers
def test_city_style_classifier_report_confusion_and_reload(mir: Corpus) -> None:
    report = train_classifier(mir, "label", split=SPLIT, fit_settings=FAST)
    test = report.metrics["test"]
    assert set(test["per_class_accuracy"]) == {"nopeople", "people"}
    cm = np.array(test["confusion_matrix"])
    assert cm.sum() == test["n"] == report.metrics["photos"]["test"]
    majority = max(test["support"].values()) / test["n"]
    assert test["accuracy"] > majority + 0.05, (test["accuracy"], majority)
    folder = mir.root / report.path
    png = (folder / "confusion.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = (folder / "report.html").read_text()
    assert "nopeople" in page and "confusion.png" in page
    fs = feature_store.open_feature_set(mir, "efficientnet-lite0")
    x = feature_rows(fs, np.unique(fs.photo_ids()))
    with torch.inference_mode():
        before = torch.softmax(report.model(torch.from_numpy(x)), dim=1).numpy()
    assert np.array_equal(before, load_classifier(mir, "classifier-label").predict_features(x))


def test_multilabel_concept_classifier(mir: Corpus, labels_csv: Path) -> None:
    report = train_classifier(
        mir,
        "concepts",
        labels=read_label_file(labels_csv),
        head="mlp",
        hidden=256,
        split=SPLIT,
        fit_settings=FAST,
    )
    test = report.metrics["test"]
    assert set(test["per_label_ap"]) == set(read_label_file(labels_csv).names)
    assert test["mAP"] > _baseline_map(mir, labels_csv) + 0.15
    with pytest.raises(LearnError, match="needs labels"):
        train_classifier(mir, "concepts", split=SPLIT, fit_settings=FAST)


def test_predict_files_folders_and_corpus_photos(mir: Corpus, tmp_path: Path) -> None:
    if "classifier-label" not in {m.name for m in list_models(mir)}:
        train_classifier(mir, "label", split=SPLIT, fit_settings=FAST)
    images = shared_data("mirflickr25k/images")
    folder = tmp_path / "new"
    folder.mkdir()
    for name in ("im1098.jpg", "im1107.jpg"):
        (folder / name).write_bytes((images / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8not a jpeg")
    single = tmp_path / "one.jpg"
    single.write_bytes((images / "im1112.jpg").read_bytes())
    preds = predict_paths(mir, "classifier-label", [folder, single], top_k=2)
    assert [Path(p.key).name for p in preds] == ["broken.jpg", "im1098.jpg", "im1107.jpg", "one.jpg"]
    assert preds[0].error and not preds[0].labels
    for p in preds[1:]:
        assert p.error is None and len(p.labels) == 2
        assert {lab for lab, _ in p.labels} == {"people", "nopeople"}
        assert sum(s for _, s in p.labels) == pytest.approx(1.0, abs=1e-5)
    done, left = predict_corpus(mir, "classifier-label", top_k=1)
    assert done == N_PHOTOS and left == 0
    assert predict_corpus(mir, "classifier-label")[0] == 0  # resumes: nothing left to do
    count = mir.conn.execute("SELECT COUNT(*) FROM model_predictions WHERE model = 'classifier-label'")
    assert count.fetchone()[0] == N_PHOTOS


def test_finetuned_classifier_trains_saves_and_reloads(tmp_path: Path, labels_csv: Path) -> None:
    # a small corpus of its own: fine-tuning reads every photo through the network once
    images = shared_data("mirflickr25k/images")
    rows = list(csv.reader(labels_csv.read_text(encoding="utf-8").splitlines()))
    people = rows[0].index("people")
    for row in rows[1:25]:
        folder = tmp_path / "src" / ("people" if row[people] == "1" else "nopeople")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / row[0]).write_bytes((images / row[0]).read_bytes())
    small_corpus = Corpus.create(tmp_path / "c")
    import_folder(small_corpus, tmp_path / "src")
    featurize_images(small_corpus, "efficientnet-lite0", workers=1)
    small = FitSettings(epochs=3, patience=3, batch_size=16, learning_rate=1e-3, seed=0)
    report = train_classifier(
        small_corpus, "label", name="ft", split="hash:50/20/30", fit_settings=small, finetune_blocks=1
    )
    assert report.settings["finetune"]["blocks"] == 1 and report.metrics["test"]["n"] > 0
    files = [images / "im1098.jpg", images / "im1107.jpg"]
    loaded = load_classifier(small_corpus, "ft")
    probs, errors = loaded.predict_files(files)
    assert not errors and probs.shape == (2, 2)
    tail = report.model
    from photocorpus.image_preprocess import preprocess_batch
    from photocorpus.learn.finetune import load_base, trunk

    base, _ = load_base()
    with torch.inference_mode():
        x = trunk(base, 1, torch.from_numpy(preprocess_batch([str(f) for f in files]).pixels))
        before = torch.softmax(tail(x.to(torch.float16)), dim=1).numpy()  # stored as float16
    assert np.array_equal(before, probs)
    with pytest.raises(LearnError, match="fine-tuned"):
        loaded.predict_features(np.zeros((1, 1280), np.float32))
    small_corpus.close()


def test_finetuned_semantic_model_trains_reloads_and_searches(tmp_path: Path, labels_csv: Path) -> None:
    # a small corpus of its own: fine-tuning reads every photo through the network once
    images = shared_data("mirflickr25k/images")
    rows = list(csv.reader(labels_csv.read_text(encoding="utf-8").splitlines()))
    header, body = rows[0], rows[1:41]
    (tmp_path / "src").mkdir()
    for row in body:
        (tmp_path / "src" / row[0]).write_bytes((images / row[0]).read_bytes())
    corpus = Corpus.create(tmp_path / "c")
    import_folder(corpus, tmp_path / "src")
    featurize_images(corpus, "efficientnet-lite0", workers=1)
    origins = {
        pid: Path(origin).name for pid, origin in corpus.conn.execute("SELECT photo_id, origin FROM files")
    }
    texts = {r[0]: " ".join(n for n, v in zip(header[1:], r[1:], strict=True) if v == "1") for r in body}
    ids = np.array(sorted(origins), dtype=np.int64)
    vectors = minilm_encoder()([texts[origins[int(i)]] or "nothing" for i in ids])
    feature_store.append_rows(corpus, "text.minilm", ids, vectors, model_id="concept names")
    small = FitSettings(epochs=3, patience=3, batch_size=16, learning_rate=1e-3, seed=0)
    report = train_semantic(
        corpus, "minilm", loss="infonce", head="linear", temperature=0.1, name="ft-sem",
        split="hash:50/20/30", fit_settings=small, finetune_blocks=1,
    )  # fmt: skip
    assert report.settings["finetune"]["blocks"] == 1 and report.metrics["test"]["n"] > 0
    # every photo with a file was embedded through the tuned network and stored with the model
    folder = corpus.root / report.path
    stored_ids, stored = np.load(folder / "photo_ids.npy"), np.load(folder / "embeddings.npy")
    assert sorted(stored_ids.tolist()) == ids.tolist() and stored.shape == (len(ids), 384)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)
    # reloaded, the network gives the trained module's outputs on image files
    files = [images / body[0][0], images / body[1][0]]
    from photocorpus.image_preprocess import preprocess_batch
    from photocorpus.learn.finetune import load_base, trunk

    base, _ = load_base()
    with torch.inference_mode():
        x = trunk(base, 1, torch.from_numpy(preprocess_batch([str(f) for f in files]).pixels))
    before = report.model.embed(x.numpy().astype(np.float16))  # type: ignore[union-attr]
    after, ok = load_semantic(corpus, "ft-sem").embed_files(files)
    assert ok.all() and np.array_equal(before, after)
    # text search ranks the stored tuned vectors, never the untuned stored features
    query = "people"
    hits = search_text(corpus, query, k=10, model="ft-sem")
    scores = stored @ query_vector(parse_query(query), minilm_encoder())
    want = stored_ids[np.lexsort((stored_ids, -scores))][:10]
    assert [h.photo_id for h in hits] == want.tolist()
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:10], atol=1e-5)
    # an example image runs through the tuned network: a corpus photo's own file finds it first
    searcher = Searcher(corpus, model="ft-sem")
    first = searcher.search_image(files[0], k=3)
    assert origins[first[0].photo_id] == files[0].name and first[0].score > 0.999
    import photocorpus as pc
    from photocorpus.errors import ParameterError

    with pytest.raises(ParameterError, match="finetune_blocks"):
        pc.train_semantic(corpus, finetune_blocks=6)
    corpus.close()


# ------------------------------------------------------------------------------------------ search
def test_text_search_ranks_concept_photos_first(mir: Corpus, semantic, labels_csv: Path) -> None:  # type: ignore[no-untyped-def]
    lf = read_label_file(labels_csv)
    night = {k for k, row in zip(lf.keys, lf.matrix[:, lf.names.index("night")], strict=True) if row}
    hits = search_text(mir, "night", k=20, model="semantic-minilm")
    assert [h.rank for h in hits] == list(range(1, 21))
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert all(h.path and Path(h.path).is_file() for h in hits)
    precision = np.mean([_origin(mir, h.photo_id) in night for h in hits])
    share = np.mean([Path(o).name in night for (o,) in mir.conn.execute("SELECT origin FROM files")])
    assert precision > 3 * share, (precision, share)
    # a negative term pushes photos with people down
    m = "semantic-minilm"
    people = {k for k, row in zip(lf.keys, lf.matrix[:, lf.names.index("people")], strict=True) if row}
    with_people = np.mean(
        [_origin(mir, h.photo_id) in people for h in search_text(mir, "night", k=30, model=m)]
    )
    without = np.mean(
        [_origin(mir, h.photo_id) in people for h in search_text(mir, "night -people^2", k=30, model=m)]
    )
    assert without < with_people


def test_image_search_finds_the_photo_itself(mir: Corpus, semantic) -> None:  # type: ignore[no-untyped-def]
    images = shared_data("mirflickr25k/images")
    searcher = Searcher(mir, model="semantic-minilm")
    hits = searcher.search_image(images / "im1.jpg", k=5)
    assert _origin(mir, hits[0].photo_id) == "im1.jpg"
    bridge = Searcher(mir, method="bridge")  # no model: raw-feature cosine search
    assert _origin(mir, bridge.search_image(images / "im1.jpg", k=3)[0].photo_id) == "im1.jpg"


def test_pc_search_keeps_its_searcher_and_answers_through_the_callers_corpus(
    mir: Corpus,
    semantic,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server or a notebook asks many queries: the model, index and encoder load once per process,
    # and each answer reads the catalog through the caller's own (per-thread) connection.
    import photocorpus as pc
    import photocorpus.learn.search as search_module

    built: list[int] = []
    real_init = search_module.Searcher.__init__

    def counting_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(search_module, "_SEARCHERS", {})
    monkeypatch.setattr(search_module.Searcher, "__init__", counting_init)
    first = Corpus.open(mir.root)
    try:
        a = pc.search(first, "night", k=10)
    finally:
        first.close()
    with Corpus.open(mir.root) as second:  # the searcher's first corpus is closed by now
        b = pc.search(second, "night", k=10)
        c = pc.search(second, image=shared_data("mirflickr25k/images") / "im1.jpg", k=3)
    assert len(built) == 1
    assert [h.photo_id for h in a] == [h.photo_id for h in b]
    assert _origin(mir, c.hits[0].photo_id) == "im1.jpg"
    # asking for another index kind is its own, fresh searcher
    with Corpus.open(mir.root) as third:
        pc.search(third, "night", k=5, index="flat")
    assert len(built) == 2


def _fused_reference(mir: Corpus, query: str, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(photo ids, fused scores) best first, computed without the fusion code: every photo scored by
    the reloaded model and by the bridge, each standardised over all photos, then blended."""
    from photocorpus.learn.bridge import ImageNetBridge

    fs = feature_store.open_feature_set(mir, "efficientnet-lite0")
    ids = np.unique(fs.photo_ids())
    terms = parse_query(query)
    model = load_semantic(mir, "semantic-minilm")
    sem = (model.embed(feature_rows(fs, ids)) @ query_vector(terms, minilm_encoder())).astype(np.float64)
    bridge = ImageNetBridge(mir, "efficientnet-lite0.logits", encode=minilm_encoder())
    br = bridge.score_ids(terms, ids).astype(np.float64)
    fused = (1 - weight) * (sem - sem.mean()) / sem.std() + weight * (br - br.mean()) / br.std()
    order = np.lexsort((ids, -fused))
    return ids[order], fused[order]


@pytest.mark.parametrize("index_kind", ["flat", "hnsw"])
def test_bridge_weight_ranks_by_the_fused_z_scores(
    mir: Corpus,
    semantic,  # type: ignore[no-untyped-def]
    index_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import photocorpus.learn.score_fusion as score_fusion

    # flat: every photo scored; hnsw: candidates from both sides, widened until the bound proves the
    # top-k (a small first candidate list makes the 300-photo corpus need the bound and the widening)
    monkeypatch.setattr(score_fusion, "CANDIDATES_MIN", 5)
    searcher = Searcher(mir, model="semantic-minilm", index_kind=index_kind)
    for query, weight in (("night", 0.3), ("dog -people", 0.6)):
        want_ids, want_scores = _fused_reference(mir, query, weight)
        hits = searcher.search_text(query, k=10, bridge_weight=weight)
        assert [h.photo_id for h in hits] == want_ids[:10].tolist(), (query, weight)
        np.testing.assert_allclose([h.score for h in hits], want_scores[:10], atol=1e-4)
        assert hits[0].method == f"semantic:semantic-minilm+bridge:efficientnet-lite0.logits@{weight:g}"
    # the fusion at weight 0 ranks exactly as the semantic index does
    fusion = searcher.fusion()
    terms = parse_query("night")
    q = query_vector(terms, searcher.encode)
    _, fused_ids = fusion.top(q, fusion.bridge.weights(terms), 0.0, 15)
    _, index_ids = searcher.index.search(q[None, :], 15)  # type: ignore[union-attr]
    assert fused_ids.tolist() == index_ids[0].tolist()
    plain = [h.photo_id for h in searcher.search_text("night", k=15)]
    assert [h.photo_id for h in searcher.search_text("night", k=15, bridge_weight=0)] == plain
    assert searcher.fusion() is fusion  # the moments are computed once per searcher


def test_bridge_weight_is_validated_early_and_reaches_the_cli(mir: Corpus, semantic) -> None:  # type: ignore[no-untyped-def]
    import photocorpus as pc
    from photocorpus.errors import ParameterError

    for bad in (1.0, -0.1, 2, "0.2"):
        with pytest.raises(ParameterError, match="bridge_weight"):
            pc.search(mir, "night", bridge_weight=bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="text queries only"):
        pc.search(mir, image=shared_data("mirflickr25k/images") / "im1.jpg", bridge_weight=0.2)
    results = pc.search(mir, "night", k=5, bridge_weight=0.2)
    assert results.method.endswith("+bridge:efficientnet-lite0.logits@0.2")
    from typer.testing import CliRunner

    from photocorpus.cli import app

    out = CliRunner().invoke(
        app, ["search", "night", "--k", "5", "--bridge-weight", "0.2", "--json", "-C", str(mir.root)]
    )
    assert out.exit_code == 0, out.output
    assert [h["photo_id"] for h in json.loads(out.stdout)] == [h.photo_id for h in results.hits]


def test_bridge_search_works_without_a_model_and_beats_chance(mir: Corpus, labels_csv: Path) -> None:
    searcher = Searcher(mir, method="bridge")
    assert searcher.method == "bridge:efficientnet-lite0.logits"
    assert searcher.explain("pizza").startswith("closest ImageNet classes: pizza ")
    assert "expect weak results" in searcher.explain("skyline at night")  # ImageNet has no such class
    assert "expect weak results" not in searcher.explain("dog")
    result = evaluate_label_queries(mir, searcher, read_label_file(labels_csv), on="all")
    assert result["mAP"] > _baseline_map(mir, labels_csv) + 0.05
    # the sparse top-k cache is saved for the next process
    folder = mir.root / "models" / "imagenet-bridge" / "efficientnet-lite0.logits"
    assert (folder / "cache.json").is_file() and len(list(folder.glob("topk-*.npz"))) == 1


# ------------------------------------------------------------------------------------------ evaluate
def test_label_query_evaluation_on_test_split(
    mir: Corpus, semantic, labels_csv: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    searcher = Searcher(mir, model="semantic-minilm")
    lf = read_label_file(labels_csv)
    result = evaluate_label_queries(mir, searcher, lf, on="test", split=SPLIT)
    assert result["photos"] == semantic.metrics["photos"]["test"]
    assert result["mAP"] == pytest.approx(semantic.metrics["test"]["concepts"]["mAP"], abs=1e-6)
    qfile = tmp_path / "q.txt"
    qfile.write_text("# concept queries\nnight\tnight city lights\ndog\n", encoding="utf-8")
    custom = evaluate_label_queries(mir, searcher, lf, read_queries(qfile), on="test", split=SPLIT)
    assert set(custom["queries"]) == {"night city lights", "dog"}
    assert custom["queries"]["night city lights"]["label"] == "night"
    qfile.write_text("sunset\n", encoding="utf-8")
    with pytest.raises(LearnError, match="names no label column"):
        evaluate_label_queries(mir, searcher, lf, read_queries(qfile), on="test", split=SPLIT)


def test_judged_precision_at_k_and_unjudged_template(mir: Corpus, semantic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    searcher = Searcher(mir, model="semantic-minilm")
    queries = read_queries("instacities")
    assert len(queries) == 24 and queries[0].text == "car" and queries[-1].text == "kid dog"
    first = evaluate_judged_queries(mir, searcher, queries[:2], {}, k=5, on="all")
    assert first["mean_P@5"]["all"] == 0.0 and len(first["unjudged"]) == 10
    template = tmp_path / "judge.csv"
    write_unjudged(template, first["unjudged"])
    rows = list(csv.DictReader(template.open(encoding="utf-8")))
    rows[0]["relevant"], rows[1]["relevant"], rows[5]["relevant"] = "1", "0", "1"
    with template.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["query", "photo", "relevant", "path"])
        writer.writeheader()
        writer.writerows(rows)
    second = evaluate_judged_queries(mir, searcher, queries[:2], read_judgments(template), k=5, on="all")
    assert second["queries"]["car"]["precision"] == pytest.approx(0.2)
    assert second["queries"]["car"]["unjudged"] == 3
    assert second["queries"]["skyline"]["precision"] == pytest.approx(0.2)
    assert second["mean_P@5"]["simple"] == pytest.approx(0.2)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_search_json_html_and_evaluate(mir: Corpus, semantic, labels_csv: Path) -> None:  # type: ignore[no-untyped-def]
    root = str(mir.root)
    out = run_cli("search", "night", "--k", "5", "--json", "--html", "-C", root)
    hits = json.loads(out.stdout)
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert {"source_id", "score", "label", "path"} <= set(hits[0])
    assert hits[0]["score"] >= hits[-1]["score"] and Path(hits[0]["path"]).is_file()
    page = Path(out.stderr.split("Gallery: ")[1].strip())
    assert page.is_file() and page.parent == mir.root / "reports" / "search"
    assert Path(hits[0]["path"]).name in page.read_text()
    # the other commands in-process (a subprocess per command would reload torch and MiniLM each time)
    from typer.testing import CliRunner

    from photocorpus.cli import app

    args = ["evaluate", "retrieval", "--labels", str(labels_csv), "--split", SPLIT, "-m", "semantic-minilm"]
    result = CliRunner().invoke(app, [*args, "--json", "-C", root])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    assert evaluated["mAP"] == pytest.approx(semantic.metrics["test"]["concepts"]["mAP"], abs=1e-6)
    table = CliRunner().invoke(app, [*args, "-C", root])
    assert "mAP" in table.stdout and "night" in table.stdout
    listing = CliRunner().invoke(app, ["models", "-C", root]).stdout
    assert "semantic-minilm" in listing and "mean_cosine" in listing
    bad = run_cli("search", "-C", root, check=False)
    assert bad.returncode == 2 and "give a text QUERY" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("search", "-people", "-C", root, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


HEAVY_MODULES = ("torch", "sentence_transformers", "transformers")
# runs the CLI as `python -m photocorpus` does, then reports which heavy modules the search imported
IMPORT_PROBE = (
    "import atexit, sys\n"
    f"heavy = {HEAVY_MODULES!r}\n"
    "atexit.register(lambda: print('loaded:', [m for m in heavy if m in sys.modules], file=sys.stderr))\n"
    "sys.argv[0] = 'photocorpus'\n"
    "from photocorpus.cli import main\n"
    "main()\n"
)


def test_warm_cli_search_imports_no_torch_and_ranks_as_the_torch_path(mir: Corpus, semantic) -> None:  # type: ignore[no-untyped-def]
    """Once the index is built, a CLI search runs the query through onnxruntime MiniLM and the saved
    index: no torch, sentence-transformers or transformers (seconds of start-up), the same ranking."""
    import subprocess
    import sys

    from photocorpus.text_encoders import MiniLMEncoder

    root, model = str(mir.root), "semantic-minilm"
    run_cli("search", "night", "-m", model, "-C", root, "--json")  # builds or updates the index
    reference = load_semantic(mir, model)  # the torch path: every photo embedded now, exact scores
    fs = feature_store.open_feature_set(mir, reference.info["image_features"])
    ids = fs.photo_ids()
    joint = reference.embed(feature_rows(fs, ids))
    st = MiniLMEncoder(threads=2)

    def encode(texts):  # type: ignore[no-untyped-def]
        return st.encode(list(texts))["text.minilm"]

    for query in ("night", "dog +beach", "people -portrait^0.5"):
        args = ["search", query, "-m", model, "-C", root, "--json", "--k", "10"]
        proc = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE, *args], capture_output=True, text=True, check=True
        )
        assert "loaded: []" in proc.stderr, proc.stderr
        hits = json.loads(proc.stdout)
        scores = joint @ query_vector(parse_query(query), encode)
        best = np.argsort(-scores, kind="stable")[:10]
        assert [h["photo_id"] for h in hits] == ids[best].tolist()
        assert [h["score"] for h in hits] == pytest.approx(scores[best].tolist(), abs=1e-5)


def test_explore_report_gains_a_search_box_from_the_semantic_model(mir: Corpus, semantic) -> None:  # type: ignore[no-untyped-def]
    from photocorpus.api import explore_photos
    from photocorpus.learn.report_search import report_queries, report_search_index

    queries = report_queries(mir)
    assert queries[:2] == ["car", "skyline"]  # the paper's list first, then labels and tags
    assert "people" in queries and "nopeople" in queries
    index = report_search_index(mir, ["people", "car"], k=30)
    assert index is not None and index.model.startswith("semantic:")
    # the box ranks exactly as `photocorpus search` does
    assert index.queries["people"] == [h.photo_id for h in search_text(mir, "people", k=30)]
    result = explore_photos(mir, name="with-search", method="pca", k=4, compare_raw=False)
    html = Path(result.index_html).read_text(encoding="utf-8")
    assert 'id="pc-search-input"' in html
    payload = (Path(result.index_html).parent / "data" / "search.js").read_text(encoding="utf-8")
    data = json.loads(payload.split("=", 1)[1].rstrip().rstrip(";"))
    assert data["model"].startswith("semantic:") and "skyline night" in data["queries"]
    assert all(len(v) > 0 for v in data["queries"].values())


def test_first_search_after_train_semantic_needs_no_torch(mir: Corpus, semantic) -> None:  # type: ignore[no-untyped-def]
    """`train semantic` leaves the model's search index built, so the very first search in a fresh
    process (no index yet before this change: every photo embedded through torch) imports no torch.
    Last in this module: the model it trains becomes the corpus's newest."""
    import subprocess
    import sys

    root = str(mir.root)
    run_cli(
        "train", "semantic", "--text", "minilm", "-C", root, "--name", "semantic-fresh", "--epochs", "2", "-q"
    )
    args = ["search", "night", "-m", "semantic-fresh", "-C", root, "--json", "--k", "5"]
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *args], capture_output=True, text=True, check=True
    )
    assert "loaded: []" in proc.stderr, proc.stderr
    assert len(json.loads(proc.stdout)) == 5
