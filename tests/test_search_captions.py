"""Search with captions the corpus trained its own text model on: the demo corpus (real sample photos,
reposts, captions with hashtags and an XSS payload) -> word2vec caption embeddings -> semantic model
-> text search and the HTML gallery; plus the tags and label classifiers on the same captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from photocorpus.corpus import Corpus
from photocorpus.demo import build_demo_source
from photocorpus.features.pipeline import featurize_images
from photocorpus.features.text_embed import embed_captions
from photocorpus.importing import import_folder
from photocorpus.learn.classifier import train_classifier
from photocorpus.learn.gallery import write_gallery
from photocorpus.learn.heads import FitSettings
from photocorpus.learn.search import Searcher
from photocorpus.learn.semantic import load_semantic, train_semantic

FAST = FitSettings(epochs=30, patience=5, batch_size=16, learning_rate=3e-3, seed=0)
SPLIT = "hash:60/20/20"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    base = tmp_path_factory.mktemp("demo")
    build_demo_source(base / "src")
    corpus = Corpus.create(base / "corpus")
    import_folder(corpus, base / "src")
    featurize_images(corpus, "efficientnet-lite0", workers=1)
    embed_captions(corpus, "word2vec")
    return corpus


def test_word2vec_semantic_model_searches_by_caption_words(demo: Corpus) -> None:
    report = train_semantic(demo, "word2vec-tfidf", loss="sigmoid-ce", split=SPLIT, fit_settings=FAST)
    assert report.settings["text_features"] == "text.word2vec-tfidf"
    searcher = Searcher(demo, model="semantic-word2vec-tfidf")
    assert searcher.method == "semantic:semantic-word2vec-tfidf"
    hits = searcher.search_text("space", k=8)
    assert len(hits) == 8 and all(h.method == searcher.method for h in hits)
    # trained on these very captions: the space photos (and their reposts) come first
    assert sum(h.label == "space" for h in hits[:5]) >= 3, [(h.label, h.caption) for h in hits]
    loaded = load_semantic(demo, "semantic-word2vec-tfidf")
    x = np.eye(1280, dtype=np.float32)[:5]
    assert np.array_equal(report.model.embed(x), loaded.embed(x))


def test_gallery_of_real_hits_escapes_the_xss_caption(demo: Corpus) -> None:
    searcher = Searcher(demo, method="bridge")
    hits = searcher.search_text("wall clock", k=40)
    clock = [h for h in hits if "onerror" in h.caption]
    assert clock, "the demo's clock photo (XSS caption) should be among the results"
    page = write_gallery(demo, hits, query="wall clock <b>", subtitle="test")
    html = page.read_text(encoding="utf-8")
    assert "<img src=x onerror" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "wall clock &lt;b&gt;" in html
    for hit in hits:
        if hit.path:
            assert Path(hit.path).is_file()


def test_tags_and_label_classifiers_on_captions(demo: Corpus) -> None:
    tags = train_classifier(demo, "tags", min_tag_count=3, split=SPLIT, fit_settings=FAST)
    assert tags.settings["multilabel"] and "space" in tags.settings["classes"]
    assert "mAP" in tags.metrics["val"]
    label = train_classifier(demo, "label", split="hash:50/25/25", fit_settings=FAST)
    classes = set(label.settings["classes"])
    assert {"space", "food", "animals"} <= classes and "broken" not in classes
    assert sum(label.metrics["test"]["support"].values()) == label.metrics["test"]["n"]
