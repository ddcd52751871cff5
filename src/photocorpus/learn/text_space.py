"""Encode query text into a caption-embedding space, exactly as featurize encoded the captions.

A semantic model regresses one of featurize's caption sets (``text.minilm``, ``text.lda``,
``text.word2vec``, ``text.word2vec-tfidf``); a query must land in the same space, so it goes through
the very encoder that filled the set: the packaged MiniLM (also for ``text.minilm-tags``, whose
one-tag caption is the query's own MiniLM vector), or the LDA / word2vec model featurize
trained on this corpus and saved beside the set (:mod:`photocorpus.features.text_embed`). Encoders are
loaded once per process; MiniLM runs on onnxruntime (:mod:`photocorpus.minilm_onnx`), so a query
needs neither torch nor sentence-transformers: loading it costs a few tenths of a second, a short
query a few ms.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from photocorpus.learn.dataset import LearnError

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

TEXT_SPACES: dict[str, str] = {
    "minilm": "text.minilm",
    "lda": "text.lda",
    "word2vec": "text.word2vec",
    "word2vec-tfidf": "text.word2vec-tfidf",
    "minilm-tags": "text.minilm-tags",
}

Encoder = Callable[[Sequence[str]], np.ndarray]


def text_feature_set(space: str) -> str:
    if space not in TEXT_SPACES:
        raise LearnError(f"unknown text space {space!r}; choose one of {', '.join(TEXT_SPACES)}")
    return TEXT_SPACES[space]


@functools.cache
def _minilm() -> Encoder:
    # onnxruntime, not sentence-transformers: the same vectors without importing torch and
    # transformers, which cost a CLI search seconds of start-up (see photocorpus.minilm_onnx)
    from photocorpus.minilm_onnx import OnnxMiniLM

    return OnnxMiniLM()


@functools.cache
def _trained(space: str, model_dir: str, seed: int) -> Encoder:
    from pathlib import Path

    from photocorpus.text_encoders import LdaEncoder, Word2VecEncoder

    folder = Path(model_dir)
    name = TEXT_SPACES[space]
    model = LdaEncoder(folder, seed) if space == "lda" else Word2VecEncoder(folder)

    def encode(texts: Sequence[str]) -> np.ndarray:
        return model.encode(list(texts))[name]

    return encode


def minilm_encoder() -> Encoder:
    """The packaged all-MiniLM-L6-v2 (offline); unit-length 384-d rows, zeros for empty text."""
    return _minilm()


def query_encoder(corpus: Corpus, space: str) -> Encoder:
    """The encoder of ``space`` for this corpus (trained spaces need featurize's saved model)."""
    name = text_feature_set(space)
    if space in ("minilm", "minilm-tags"):
        # a query against tag-list targets is embedded as a one-tag caption: with either tag pooling
        # (mean of unit per-tag vectors, or the joined string) that is MiniLM's vector of the query itself
        return _minilm()
    from photocorpus import feature_store

    if not feature_store.has_feature_set(corpus, name):
        raise LearnError(f"no {name} feature set: run `photocorpus featurize --text {space.split('-')[0]}`")
    folder = corpus.abs_path(
        feature_store.feature_dir(name if space != "word2vec-tfidf" else "text.word2vec")
    )
    model_dir = folder / "model"
    if not model_dir.is_dir():
        raise LearnError(
            f"the {space} text model is missing from {model_dir}; re-run featurize with --retrain"
        )
    return _trained(space, str(model_dir), corpus.settings.featurize.text_seed)
