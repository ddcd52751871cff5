"""Caption embeddings: MiniLM offline, LDA and word2vec trained on the corpus, text cleaning, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from photocorpus import feature_store
from photocorpus.config import FeaturizeSettings, Settings
from photocorpus.corpus import Corpus
from photocorpus.features.text_embed import TextEmbedError, caption_texts, embed_captions, tokenize
from photocorpus.importing import import_folder

CAPTIONS = [
    # (theme, caption): themes repeat so that the trained models have co-occurrences to learn from
    ("cat", "My cat sleeping on the sofa all afternoon #cat #caturday"),
    ("cat", "The kitten is sleeping again, lazy cat on the couch #cat #kitten"),
    ("cat", "Cat nap on the sofa, best cat ever #catsofinstagram #cat"),
    ("cat", "Our kitten playing with the cat toy #kitten #cat"),
    ("food", "Pizza night with friends, cheese and basil #pizza #food"),
    ("food", "Best pizza in Brooklyn, thin crust and fresh basil #pizza #nyc #food"),
    ("food", "Homemade pasta with basil and cheese #food #pasta"),
    ("food", "Brunch: eggs, toast and coffee &amp; pancakes #food #brunch"),
    ("city", "Skyline at sunset from the bridge #nyc #skyline #sunset"),
    ("city", "Sunset over the Manhattan skyline, view from Brooklyn bridge #nyc #sunset"),
    ("city", "Walking across the bridge at night, city lights #nyc #bridge"),
    ("city", "Times Square lights at night #nyc #citylights"),
]


def _build(folder: Path, photos: list[Path], captions: list[tuple[str, str]], start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (photo, (_theme, caption)) in enumerate(zip(photos, captions, strict=False)):
        name = f"p{start + i:03d}"
        shutil.copyfile(photo, folder / f"{name}.jpg")
        (folder / f"{name}.txt").write_text(caption, encoding="utf-8")


def _corpus(tmp_path: Path, instany_images: Path, name: str = "c") -> Corpus:
    photos = sorted(instany_images.glob("*.jpg"))
    src = tmp_path / f"{name}-src" / "nyc"
    _build(src, photos[:24], CAPTIONS * 2)
    shutil.copyfile(photos[30], src / "nocaption.jpg")  # no sidecar: no text at all
    settings = Settings(featurize=FeaturizeSettings(lda_topics=4, word2vec_dims=32))
    corpus = Corpus.create(tmp_path / name, settings)
    import_folder(corpus, src.parent, workers=1)
    return corpus


def _by_source(corpus: Corpus, name: str) -> dict[str, np.ndarray]:
    fs = feature_store.open_feature_set(corpus, name)
    ids = fs.photo_ids().tolist()
    sources = dict(corpus.conn.execute("SELECT id, source_id FROM photos"))
    matrix = np.asarray(fs.matrix(), dtype=np.float32)
    return {sources[pid].rsplit("/", 1)[-1]: matrix[i] for i, pid in enumerate(ids)}


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_caption_text_is_cleaned_and_falls_back_to_title_caption_and_hashtags(tmp_path: Path) -> None:
    with Corpus.create(tmp_path / "c") as corpus:
        from photocorpus.records import PhotoRecord

        rec = PhotoRecord(
            source="flickr", source_id="1", labels=["x"], title="Golden  hour",
            caption="Brunch &amp;amp; coffee\n at the <b>park</b>\u200b #Sunday", hashtags=["sunday", "NYC"],
        )  # fmt: skip
        empty = PhotoRecord(source="flickr", source_id="2", labels=["x"])
        ids = corpus.add_photos([rec, empty])
        texts = caption_texts(corpus, ids)
    assert texts[ids[1]] == ""
    text = texts[ids[0]]
    assert text.startswith("Golden hour ")  # title first, whitespace collapsed
    assert "Brunch & coffee" in text and "&amp;" not in text  # entities unescaped, twice
    assert "park" in text and "<b>" not in text and "\u200b" not in text  # markup and invisibles gone
    assert "#Sunday" in text and "#nyc" in text and text.count("#sunday") + text.count("#Sunday") == 1
    assert tokenize(text) == ["golden", "hour", "brunch", "coffee", "park", "sunday", "nyc"]

    with Corpus.open(tmp_path / "c") as corpus:  # once curate has stored a clean caption, it wins
        corpus.conn.execute(
            "INSERT INTO curation (photo_id, caption_clean, updated_at) VALUES (?, ?, ?)",
            (ids[0], "curated text #here", "2026-01-01T00:00:00Z"),
        )
        assert caption_texts(corpus, ids) == {ids[0]: "curated text #here", ids[1]: ""}


def test_minilm_lda_and_word2vec_sets(tmp_path: Path, instany_images: Path) -> None:
    corpus = _corpus(tmp_path, instany_images)
    reports = {r.model: r for r in embed_captions(corpus, "all")}
    assert set(reports) == {"minilm", "lda", "word2vec"}
    assert all(r.computed == 25 and r.empty == 1 for r in reports.values())
    assert reports["lda"].trained and reports["word2vec"].trained and not reports["minilm"].trained
    dims = {n: feature_store.open_feature_set(corpus, n).dims for n in
            ("text.minilm", "text.lda", "text.word2vec", "text.word2vec-tfidf")}  # fmt: skip
    assert dims == {"text.minilm": 384, "text.lda": 4, "text.word2vec": 32, "text.word2vec-tfidf": 32}

    mini = _by_source(corpus, "text.minilm")
    assert not mini["nocaption"].any()  # no text: an all-zero row
    np.testing.assert_allclose(np.linalg.norm(mini["p000"]), 1.0, atol=2e-3)
    # p000/p001 are both about a sleeping cat on a sofa; p004 is pizza
    assert _cos(mini["p000"], mini["p001"]) > _cos(mini["p000"], mini["p004"]) + 0.2

    lda = _by_source(corpus, "text.lda")
    assert not lda["nocaption"].any()
    sums = np.array([v.sum() for k, v in lda.items() if k != "nocaption"])
    np.testing.assert_allclose(sums, 1.0, atol=5e-3)  # topic distributions

    mean, tfidf = _by_source(corpus, "text.word2vec"), _by_source(corpus, "text.word2vec-tfidf")
    assert not mean["nocaption"].any() and not tfidf["nocaption"].any()
    assert not np.allclose(mean["p004"], tfidf["p004"])  # the weights matter
    corpus.close()


def test_trained_models_are_deterministic_and_reused_incrementally(
    tmp_path: Path, instany_images: Path
) -> None:
    a = _corpus(tmp_path, instany_images, "a")
    b = _corpus(tmp_path, instany_images, "b")
    for corpus in (a, b):
        embed_captions(corpus, "lda")
        embed_captions(corpus, "word2vec")
    for name in ("text.lda", "text.word2vec", "text.word2vec-tfidf"):
        va, vb = _by_source(a, name), _by_source(b, name)
        assert va.keys() == vb.keys()
        for key in va:
            np.testing.assert_array_equal(va[key], vb[key])  # same captions, same seed: same rows
    b.close()

    before = _by_source(a, "text.word2vec")
    model_params = feature_store.open_feature_set(a, "text.word2vec").params
    extra = tmp_path / "extra" / "nyc"
    _build(extra, sorted(instany_images.glob("*.jpg"))[40:45], CAPTIONS[:5], start=100)
    import_folder(a, extra.parent, workers=1)
    (report,) = embed_captions(a, "word2vec")
    assert (report.pending, report.computed, report.trained) == (5, 5, False)
    after = _by_source(a, "text.word2vec")
    assert len(after) == 30
    for key, row in before.items():
        np.testing.assert_array_equal(after[key], row)  # old rows keep the old model's vectors
    assert (
        feature_store.open_feature_set(a, "text.word2vec").params["model_sha256"]
        == model_params["model_sha256"]
    )
    assert embed_captions(a, "word2vec")[0].pending == 0

    (retrained,) = embed_captions(a, "word2vec", retrain=True)
    assert retrained.trained and retrained.computed == 30
    assert feature_store.open_feature_set(a, "text.word2vec").rows == 30
    a.close()


def test_unknown_text_model_and_empty_corpus_are_clear_errors(tmp_path: Path) -> None:
    with Corpus.create(tmp_path / "c") as corpus:
        with pytest.raises(TextEmbedError, match="unknown text model 'bert'"):
            embed_captions(corpus, "bert")
        assert embed_captions(corpus, "lda")[0].pending == 0  # nothing fetched: nothing to do


def test_featurize_text_from_the_cli(tmp_path: Path, instany_images: Path) -> None:
    from tests.conftest import run_cli

    corpus = _corpus(tmp_path, instany_images)
    corpus.close()
    out = run_cli("featurize", "--text", "lda", "--corpus", str(tmp_path / "c"), "--json", "--quiet")
    report = json.loads(out.stdout)
    assert report["model"] == "lda" and report["computed"] == 25 and report["trained"]
    listed = json.loads(run_cli("features", "list", "--json", "--corpus", str(tmp_path / "c")).stdout)
    assert [s["name"] for s in listed] == ["text.lda"]  # --text alone computes no image features
