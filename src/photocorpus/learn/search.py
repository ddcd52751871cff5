"""Search a corpus by text or by example image: the one entry point the CLI and the report use.

``search_text(corpus, "snow ski", k=20)`` returns :class:`Hit` rows, best first. It uses the newest
semantic model (or the one named) through its faiss index, kept up to date incrementally; a corpus
without a semantic model (no captions: a plain folder, an instaloader dump) is searched through the
ImageNet-label bridge (:mod:`photocorpus.learn.bridge`). ``bridge_weight=w`` blends a semantic
model's score with the bridge's (:mod:`photocorpus.learn.score_fusion`). ``search_image`` embeds an
example photo the same way, or, without a semantic model, searches the raw image features by cosine
similarity.

A :class:`Searcher` keeps the index, the text encoder and the model loaded between queries (the
report and the benchmark ask many); ``search_text`` reuses one per corpus and model in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import corpus_paths, feature_store
from photocorpus.learn import registry
from photocorpus.learn.dataset import LearnError, feature_rows, photo_meta
from photocorpus.learn.image_file_features import image_file_features
from photocorpus.learn.query import describe_query, parse_query, query_vector
from photocorpus.learn.score_fusion import check_bridge_weight

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.learn.bridge import ImageNetBridge
    from photocorpus.learn.index import PhotoIndex
    from photocorpus.learn.score_fusion import BridgeFusion
    from photocorpus.learn.semantic_handle import SemanticHandle

METHODS = ("auto", "semantic", "bridge")
MAX_K = 10_000
INDEX_DIR = "index"
FEATURE_INDEX_DIR = "feature-index"


@dataclass(frozen=True)
class Hit:
    """One search result. ``path`` is the image file's absolute path (None if the photo has no file)."""

    rank: int
    score: float
    photo_id: int
    source_id: str
    label: str
    caption: str
    path: str | None
    method: str  # semantic:<model>, bridge:<logits set>, features:<feature set>, or fused (see method_for)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def has_semantic_model(corpus: Corpus) -> bool:
    """Whether text search will use a trained semantic model (else the ImageNet bridge)."""
    return bool(registry.list_models(corpus, "semantic"))


def _signature(fs: feature_store.FeatureSet) -> str:
    return json.dumps({"shards": fs.shards, "rows": fs.rows}, sort_keys=True)


def semantic_index_source(corpus: Corpus, model: SemanticHandle) -> Any:
    """An :class:`~photocorpus.learn.index.IndexSource` embedding the model's image features (a
    fine-tuned model: the photo vectors it stored at training time, as its features are not its input)."""
    from photocorpus.learn.index import IndexSource

    if model.finetuned:
        return IndexSource(
            name=f"semantic:{model.entry.name}",
            fingerprint=model.fingerprint,
            dims=int(model.info["head"]["out_dim"]),
            photo_ids=lambda: model.stored[0],
            embed=model.stored_embeddings,
            signature=lambda: f"stored:{model.fingerprint}",  # fixed at training time
        )

    fs_name = model.info["image_features"]

    def fs() -> feature_store.FeatureSet:
        return feature_store.open_feature_set(corpus, fs_name)

    return IndexSource(
        name=f"semantic:{model.entry.name}",
        fingerprint=model.fingerprint,
        dims=int(model.info["head"]["out_dim"]),
        photo_ids=lambda: fs().photo_ids(),
        embed=lambda ids: model.embed(feature_rows(fs(), ids)),
        signature=lambda: _signature(fs()),
    )


def feature_index_source(corpus: Corpus, fs_name: str) -> Any:
    """An index source over raw image features (unit length): example-image search without a model."""
    from photocorpus.learn.index import IndexSource

    def fs() -> feature_store.FeatureSet:
        return feature_store.open_feature_set(corpus, fs_name)

    def embed(ids: np.ndarray) -> np.ndarray:
        rows = feature_rows(fs(), ids)
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    first = fs()
    return IndexSource(
        name=f"features:{fs_name}",
        fingerprint=f"{first.model_id}",
        dims=first.dims,
        photo_ids=lambda: fs().photo_ids(),
        embed=embed,
        signature=lambda: _signature(fs()),
    )


class Searcher:
    """Loaded model + index + encoder for one corpus; ask it many queries."""

    def __init__(
        self,
        corpus: Corpus,
        *,
        model: str | None = None,
        method: str = "auto",
        index_kind: str | None = None,
        rebuild_index: bool = False,
    ) -> None:
        if method not in METHODS:
            raise LearnError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        self.corpus = corpus
        self.semantic: SemanticHandle | None = None
        self.index: PhotoIndex | None = None
        self._bridge: ImageNetBridge | None = None
        self._fusion: BridgeFusion | None = None
        self._encode: Any = None
        self.index_action = ""
        self._lock = threading.Lock()
        self._joint_cache: tuple[str, np.ndarray] | None = None
        cfg = corpus.settings.learn
        self.index_kind = index_kind or cfg.index
        use_semantic = method == "semantic" or (
            method == "auto" and (model is not None or has_semantic_model(corpus))
        )
        if use_semantic:
            from photocorpus.learn.index import ensure_index
            from photocorpus.learn.semantic_handle import open_semantic

            # weights (and torch) are loaded only if the index must embed photos it lacks
            self.semantic = open_semantic(corpus, model)
            folder = self.semantic.entry.folder(corpus) / INDEX_DIR
            self.index, self.index_action = ensure_index(
                folder,
                semantic_index_source(corpus, self.semantic),
                setting=self.index_kind,
                exact_max=cfg.exact_search_max,
                seed=cfg.seed,
                rebuild=rebuild_index,
            )
            self.method = f"semantic:{self.semantic.entry.name}"
        else:
            from photocorpus.learn.bridge import DEFAULT_LOGITS

            # built on the first text query: an image search needs neither MiniLM nor the class cache
            self.method = f"bridge:{DEFAULT_LOGITS}"
        self.uses_bridge = not use_semantic

    def load_text_parts(self, corpus: Corpus | None = None) -> None:
        """Load the query text encoder (and the bridge) now, reading through ``corpus``.

        Loaded on the first text query, not at construction: an image search needs neither MiniLM
        nor the bridge's class cache.
        """
        corpus = corpus or self.corpus
        if self._encode is None:
            from photocorpus.learn.text_space import minilm_encoder, query_encoder

            semantic = self.semantic
            self._encode = query_encoder(corpus, semantic.text_space) if semantic else minilm_encoder()
        if self.uses_bridge and self._bridge is None:
            from photocorpus.learn.bridge import ImageNetBridge

            self._bridge = ImageNetBridge(corpus, encode=self._encode)

    @property
    def encode(self) -> Any:
        """The query text encoder."""
        self.load_text_parts()
        return self._encode

    @property
    def bridge(self) -> ImageNetBridge | None:
        """The ImageNet-label bridge when text search goes through it (else None)."""
        self.load_text_parts()
        return self._bridge

    # ----------------------------------------------------------------------------------------- text
    def query_vector(self, query: str) -> np.ndarray:
        return query_vector(parse_query(query), self.encode)

    def fusion(self, corpus: Corpus | None = None) -> BridgeFusion:
        """The semantic index and the bridge with their score moments, built on the first fused query
        and kept: the moments are a pass over every photo's vector, too slow to repeat per query."""
        if self._fusion is None:
            from photocorpus.learn.bridge import ImageNetBridge
            from photocorpus.learn.score_fusion import BridgeFusion
            from photocorpus.learn.text_space import minilm_encoder

            assert self.semantic is not None and self.index is not None
            # the bridge's class vectors are MiniLM's, whatever text space the model learnt
            logits = self.fusion_logits(corpus)
            bridge = ImageNetBridge(corpus or self.corpus, logits, encode=minilm_encoder())
            self._fusion = BridgeFusion(self.index, bridge)
        return self._fusion

    def fusion_logits(self, corpus: Corpus | None = None) -> str:
        """The logits set fused with the semantic score: the model's own backbone's, else Lite0's."""
        from photocorpus.learn.bridge import DEFAULT_LOGITS

        assert self.semantic is not None
        own = f"{self.semantic.info['image_features']}.logits"
        return own if feature_store.has_feature_set(corpus or self.corpus, own) else DEFAULT_LOGITS

    def method_for(self, bridge_weight: float = 0.0) -> str:
        """What ranked a text query: ``semantic:<model>+bridge:<logits set>@<w>`` when fused."""
        if bridge_weight and not self.uses_bridge:
            return f"{self.method}+bridge:{self.fusion_logits()}@{bridge_weight:g}"
        return self.method

    def search_text(
        self, query: str, k: int = 20, *, corpus: Corpus | None = None, bridge_weight: float = 0.0
    ) -> list[Hit]:
        """The ``k`` best photos for ``query`` (see :mod:`photocorpus.learn.query` for the syntax).

        ``corpus``: the caller's open connection to the same corpus, for the hits' catalog rows. A
        searcher kept between requests (:func:`shared_searcher`) answers each caller through its own
        connection, so a server thread never reads through another thread's (maybe closed) one.

        ``bridge_weight`` (0 <= w < 1, 0 = off): rank a semantic model's photos by
        ``(1 - w) z(semantic) + w z(bridge)`` (:mod:`photocorpus.learn.score_fusion`); the scores are
        then that fused z-score. Without a semantic model the bridge alone ranks, whatever ``w``.
        """
        k = _check_k(k)
        bridge_weight = check_bridge_weight(bridge_weight)
        terms = parse_query(query)
        with self._lock:
            self.load_text_parts(corpus)
            if self.bridge is not None:
                scores, ids = self.bridge.top(terms, k)
            elif bridge_weight:
                fusion = self.fusion(corpus)
                q = query_vector(terms, self.encode)
                scores, ids = fusion.top(q, fusion.bridge.weights(terms), bridge_weight, k)
            else:
                assert self.index is not None
                q = query_vector(terms, self.encode)
                s, i = self.index.search(q[None, :], k)
                keep = i[0] >= 0
                scores, ids = s[0][keep], i[0][keep]
        return self._hits(scores, ids, method=self.method_for(bridge_weight), corpus=corpus)

    def explain(self, query: str) -> str:
        """One line on how the query was understood (for the bridge: its closest ImageNet classes)."""
        terms = parse_query(query)
        if self.bridge is None:
            return f"{describe_query(terms)} in the {self.semantic.text_space} space"  # type: ignore[union-attr]
        closest = self.bridge.closest_classes(terms)
        text = "closest ImageNet classes: " + ", ".join(f"{n} {w:.2f}" for n, w in closest)
        from photocorpus.learn.bridge import WEAK_MATCH

        if self.bridge.match_strength(terms) < WEAK_MATCH:
            text += " (no ImageNet class is close to this query: expect weak results)"
        return text

    def score_photos(self, query: str, photo_ids: np.ndarray) -> np.ndarray:
        """Exact scores of given photos for ``query`` (evaluation ranks a split with these)."""
        terms = parse_query(query)
        if self.bridge is not None:
            return self.bridge.score_ids(terms, np.asarray(photo_ids, dtype=np.int64))
        assert self.semantic is not None
        ids = np.asarray(photo_ids, dtype=np.int64)
        key = hashlib.sha1(ids.tobytes()).hexdigest()
        if self._joint_cache is None or self._joint_cache[0] != key:  # evaluation asks many queries
            if self.semantic.finetuned:
                self._joint_cache = (key, self.semantic.stored_embeddings(ids))
            else:
                fs = feature_store.open_feature_set(self.corpus, self.semantic.info["image_features"])
                self._joint_cache = (key, self.semantic.embed(feature_rows(fs, ids)))
        return self._joint_cache[1] @ query_vector(terms, self.encode)

    # ---------------------------------------------------------------------------------------- image
    def search_image(
        self, image: str | os.PathLike[str], k: int = 20, *, corpus: Corpus | None = None
    ) -> list[Hit]:
        """Photos most like an example image file (which need not be in the corpus); ``corpus`` as
        for :meth:`search_text`."""
        k = _check_k(k)
        corpus = corpus or self.corpus
        fs_name = (
            self.semantic.info["image_features"] if self.semantic else corpus.settings.learn.image_features
        )
        if self.semantic is not None and self.semantic.finetuned:
            # the tuned network runs on the file itself: its input is not a stored feature set
            q, ok = self.semantic.loaded.embed_files([Path(image)])
            if not ok.all():
                raise LearnError(f"cannot read {Path(image).name!r} as an image; give a JPEG or PNG file")
            features = None
        else:
            features = image_file_features(Path(image), fs_name, corpus=corpus)
        if self.semantic is not None and self.index is not None:
            q = q if features is None else self.semantic.embed(features[None, :])
            index = self.index
            method = self.method
        else:
            from photocorpus.learn.index import ensure_index

            index, _ = ensure_index(
                corpus.root / registry.MODELS_DIR / FEATURE_INDEX_DIR / corpus_paths.safe_component(fs_name),
                feature_index_source(corpus, fs_name),
                setting=self.index_kind,
                exact_max=corpus.settings.learn.exact_search_max,
                seed=corpus.settings.learn.seed,
            )
            assert features is not None
            q = (features / max(float(np.linalg.norm(features)), 1e-12))[None, :].astype(np.float32)
            method = f"features:{fs_name}"
        s, i = index.search(q, k)
        keep = i[0] >= 0
        return self._hits(s[0][keep], i[0][keep], method=method, corpus=corpus)

    # ---------------------------------------------------------------------------------------- hits
    def _hits(
        self, scores: np.ndarray, ids: np.ndarray, method: str | None = None, corpus: Corpus | None = None
    ) -> list[Hit]:
        corpus = corpus or self.corpus
        meta = photo_meta(corpus, ids.tolist())
        hits = []
        for rank, (score, pid) in enumerate(zip(scores.tolist(), ids.tolist(), strict=True), start=1):
            i = rank - 1
            rel = meta.paths[i]
            hits.append(
                Hit(
                    rank=rank,
                    score=round(float(score), 6),
                    photo_id=int(pid),
                    source_id=meta.source_ids[i],
                    label=meta.labels[i],
                    caption=meta.captions[i],
                    path=corpus.image_url(rel) if rel else None,  # a path, or the object's URL
                    method=method or self.method,
                )
            )
        return hits


def _check_k(k: int) -> int:
    if not 1 <= int(k) <= MAX_K:
        raise LearnError(f"k must be between 1 and {MAX_K}, got {k}")
    return int(k)


# ------------------------------------------------------------------------------------- entry points
_SEARCHERS: dict[tuple[str, str | None, str, str], Searcher] = {}
_SEARCHERS_LOCK = threading.Lock()


def shared_searcher(corpus: Corpus, model: str | None = None, method: str = "auto") -> Searcher:
    """A :class:`Searcher` kept for this corpus folder between calls in one process.

    Why: loading the model, the index and the query encoder costs far more than one query (a notebook
    asking query after query, a web server answering many users). A new model, or photos featurized
    since, make a fresh Searcher (whose index then catches up); the stamp is two small catalog reads.
    Pass the caller's ``corpus`` to its ``search_*`` methods: the kept one may belong to another
    thread or be closed.
    """
    newest = registry.list_models(corpus, "semantic")
    sets = [(f["name"], f["rows"], f["updated_at"]) for f in corpus.feature_sets()]
    stamp = hashlib.sha1(
        json.dumps([[(m.name, m.created_at) for m in newest], sets]).encode() + str(corpus.root).encode()
    ).hexdigest()
    cfg = corpus.settings.learn
    key = (str(corpus.root), model, method, f"{stamp}:{cfg.index}:{cfg.exact_search_max}:{cfg.seed}")
    with _SEARCHERS_LOCK:
        found = _SEARCHERS.get(key)
        if found is None:
            for old in [k for k in _SEARCHERS if k[0] == key[0]]:
                del _SEARCHERS[old]
            found = Searcher(corpus, model=model, method=method)
            _SEARCHERS[key] = found
    return found


def search_text(
    corpus: Corpus,
    query: str,
    k: int = 20,
    *,
    model: str | None = None,
    method: str = "auto",
    bridge_weight: float = 0.0,
) -> list[Hit]:
    """Text search: the ``k`` best photos for ``query``, best first (see the module docstring)."""
    return shared_searcher(corpus, model, method).search_text(
        query, k, corpus=corpus, bridge_weight=bridge_weight
    )


def search_image(
    corpus: Corpus, image: str | os.PathLike[str], k: int = 20, *, model: str | None = None
) -> list[Hit]:
    """Example-image search: the ``k`` photos most like ``image``."""
    return shared_searcher(corpus, model, "auto").search_image(image, k, corpus=corpus)


__all__ = [
    "Hit",
    "Searcher",
    "describe_query",
    "has_semantic_model",
    "search_image",
    "search_text",
    "shared_searcher",
]
