"""Text search without captions: bridge a query to photos through the ImageNet classes.

A plain folder or an instaloader dump has no captions to train a semantic model on, but featurize
has stored every photo's ImageNet logits. The bridge embeds the query and the 1000 class names with
MiniLM, turns the query's similarity to each class into class weights, and scores a photo by the
probability mass its classifier puts on the classes the query is about:

    w_c   = softmax_c( cos(query, class_c) / temperature )      (per query term, signed and summed)
    score = sum_c  p(c | photo) * w_c

The temperature concentrates the weight on the few classes that really match ("pizza" -> pizza)
instead of smearing it over the 1000; it was chosen on the MIRFLICKR train split (docs/benchmarks.md),
never on the test part. A query ImageNet has no words for ("skyline at night": no skyline, city or
night class) gets nearly flat weights; :meth:`ImageNetBridge.match_strength` detects it and search
says so.

For speed and memory a photo's distribution is kept sparse: its top ``TOPK`` classes (which hold
nearly all the mass of a softmax over 1000 classes) are cached under ``models/imagenet-bridge/``,
and a query is one gather + multiply over that (n × TOPK) array. The cache grows incrementally
with the logits feature set. The class-name embeddings depend on nothing but the class names, so
they are computed once per machine and kept in the user cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from photocorpus import corpus_paths, feature_store
from photocorpus.corpus_files import atomic_path, write_atomic
from photocorpus.imagenet_labels import imagenet_classes, softmax
from photocorpus.learn.dataset import LearnError, feature_rows
from photocorpus.learn.query import QueryTerm, term_vectors
from photocorpus.learn.registry import MODELS_DIR
from photocorpus.learn.text_space import Encoder, minilm_encoder

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

DEFAULT_LOGITS = "efficientnet-lite0.logits"
TOPK = 32
TEMPERATURE = 0.1
CLASS_TEMPLATE = "a photo of {}"
BRIDGE_DIR = "imagenet-bridge"
CACHE_VERSION = 1
ROWS_PER_CHUNK = 50_000  # rows scored per numpy pass
TOPK_CHUNK = 10_000  # logits rows turned into top-k per pass (softmax works in float64: 80 MB)
# Best query-to-class-phrase cosine under which a query matches no class. Measured with MiniLM: good
# matches score 0.5-0.7 (pizza 0.69, ski 0.68, sea 0.61, car 0.58, dog 0.57), unmatched ones
# 0.24-0.44 (people 0.24, baby 0.32, skyline 0.38, clouds 0.41, night 0.44).
WEAK_MATCH = 0.45


def class_texts() -> list[str]:
    """The phrase embedded for each class: its name and its coarse category (``a photo of pier,
    building/architecture``). The category lets a query that names no ImageNet class ("buildings",
    "landscape") still reach the classes of its kind; on MIRFLICKR's train part it raised the bridge's
    mAP from 0.44 to 0.48 over the bare names."""
    from photocorpus.imagenet_labels import load_ontology

    categories = load_ontology("coarse").by_index
    return [
        CLASS_TEMPLATE.format(name) + (f", {cat}" if cat != "other" else "")
        for name, cat in zip(imagenet_classes(), categories, strict=True)
    ]


def class_weights(
    terms: Sequence[QueryTerm], class_vecs: np.ndarray, encode: Encoder, temperature: float = TEMPERATURE
) -> np.ndarray:
    """Signed class weights of a (weighted, multi-term) query; see the module docstring."""
    vecs = term_vectors(terms, encode)
    sims = vecs @ class_vecs.T  # (terms × classes)
    weights = np.zeros(class_vecs.shape[0], dtype=np.float64)
    for term, row in zip(terms, sims, strict=True):
        z = (row.astype(np.float64) - row.max()) / temperature
        p = np.exp(z)
        weights += term.weight * p / p.sum()
    return weights.astype(np.float32)


@dataclass
class BridgeCache:
    """Every photo's top-``TOPK`` ImageNet classes and probabilities (sparse softmax)."""

    ids: np.ndarray  # sorted photo ids
    classes: np.ndarray  # (n × TOPK) int16
    probs: np.ndarray  # (n × TOPK) float16

    def scores(self, weights: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Bridge score of every cached photo (or of ``rows``) for class ``weights``."""
        cls = self.classes if rows is None else self.classes[rows]
        prb = self.probs if rows is None else self.probs[rows]
        out = np.empty(len(cls), dtype=np.float32)
        for start in range(0, len(cls), ROWS_PER_CHUNK):
            part = slice(start, start + ROWS_PER_CHUNK)
            out[part] = (prb[part].astype(np.float32) * weights[cls[part]]).sum(axis=1)
        return out


def sparse_topk(logits: np.ndarray, k: int = TOPK) -> tuple[np.ndarray, np.ndarray]:
    """Top-k class indices (int16) and softmax probabilities (float16) of each row of logits."""
    probs = softmax(np.asarray(logits, dtype=np.float32), axis=1)
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return top.astype(np.int16), np.take_along_axis(probs, top, axis=1).astype(np.float16)


class ImageNetBridge:
    """Caption-free text scoring for one corpus and one logits feature set."""

    def __init__(self, corpus: Corpus, logits_set: str = DEFAULT_LOGITS, encode: Encoder | None = None):
        if not feature_store.has_feature_set(corpus, logits_set):
            raise LearnError(
                f"text search without a semantic model needs ImageNet logits ({logits_set}); "
                "run `photocorpus featurize` first"
            )
        self.corpus = corpus
        self.logits_set = logits_set
        self.encode = encode or minilm_encoder()
        self.folder = corpus.root / MODELS_DIR / BRIDGE_DIR / corpus_paths.safe_component(logits_set)
        self.class_vecs = self._class_vectors()
        self.cache = self._load_or_update_cache()

    def _class_vectors(self) -> np.ndarray:
        """Unit MiniLM vectors of the class phrases: computed once per machine (they do not depend on
        the corpus) and cached in the user cache folder, keyed by the phrases' hash."""
        texts = class_texts()
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        path = user_cache_dir() / "bridge" / f"classes-minilm-{digest}.npy"
        if path.is_file():
            try:
                vecs = np.load(path)
            except (OSError, ValueError):
                vecs = np.zeros(0)
            if vecs.shape == (len(texts), vecs.shape[-1]) and vecs.ndim == 2:
                return vecs
        vecs = np.asarray(self.encode(texts), dtype=np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        _save_npy(path, vecs)
        return vecs

    def _load_or_update_cache(self) -> BridgeCache:
        fs = feature_store.open_feature_set(self.corpus, self.logits_set)
        signature = json.dumps({"v": CACHE_VERSION, "shards": fs.shards, "rows": fs.rows, "k": TOPK})
        meta = self.folder / "cache.json"
        cached: BridgeCache | None = None
        if meta.is_file():
            info = json.loads(meta.read_text(encoding="utf-8"))
            path = self.folder / info.get("file", "")
            if info.get("version") == CACHE_VERSION and path.is_file():
                with np.load(path) as data:
                    cached = BridgeCache(data["ids"], data["classes"], data["probs"])
                if info.get("signature") == signature:
                    return cached
        all_ids = np.unique(fs.photo_ids())
        keep = np.isin(cached.ids, all_ids) if cached is not None else None
        have = cached.ids[keep] if cached is not None else np.zeros(0, dtype=np.int64)
        new_ids = np.setdiff1d(all_ids, have, assume_unique=True)
        parts_ids = [have]
        parts_cls = [cached.classes[keep]] if cached is not None else []
        parts_prb = [cached.probs[keep]] if cached is not None else []
        for start in range(0, len(new_ids), TOPK_CHUNK):
            chunk = new_ids[start : start + TOPK_CHUNK]
            cls, prb = sparse_topk(feature_rows(fs, chunk))
            parts_ids.append(chunk)
            parts_cls.append(cls)
            parts_prb.append(prb)
        ids = np.concatenate(parts_ids)
        order = np.argsort(ids, kind="stable")
        empty_c, empty_p = np.zeros((0, TOPK), np.int16), np.zeros((0, TOPK), np.float16)
        cache = BridgeCache(
            ids[order],
            np.concatenate(parts_cls)[order] if parts_cls else empty_c,
            np.concatenate(parts_prb)[order] if parts_prb else empty_p,
        )
        self._save_cache(cache, signature)
        return cache

    def _save_cache(self, cache: BridgeCache, signature: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"topk-{uuid.uuid4().hex[:12]}.npz"
        with atomic_path(self.folder / name) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, ids=cache.ids, classes=cache.classes, probs=cache.probs)
        meta = {"version": CACHE_VERSION, "file": name, "signature": signature}
        write_atomic(self.folder / "cache.json", json.dumps(meta))
        for stale in self.folder.glob("topk-*.npz"):
            if stale.name != name:
                stale.unlink(missing_ok=True)

    def weights(self, terms: Sequence[QueryTerm]) -> np.ndarray:
        return class_weights(terms, self.class_vecs, self.encode)

    def closest_classes(self, terms: Sequence[QueryTerm], n: int = 5) -> list[tuple[str, float]]:
        """The classes a query weighs most: what the bridge understood of it."""
        w = self.weights(terms)
        names = imagenet_classes()
        return [(names[i], float(w[i])) for i in np.argsort(-w, kind="stable")[:n]]

    def match_strength(self, terms: Sequence[QueryTerm]) -> float:
        """The weakest positive term's best cosine to a class phrase. Below ``WEAK_MATCH`` the query
        names nothing ImageNet has a class for, and results are close to arbitrary."""
        vecs = term_vectors(terms, self.encode)
        best = (vecs @ self.class_vecs.T).max(axis=1)
        return float(min(b for b, t in zip(best, terms, strict=True) if t.weight > 0))

    def score_ids(self, terms: Sequence[QueryTerm], photo_ids: np.ndarray) -> np.ndarray:
        """Scores of the given photos (NaN for photos without logits)."""
        return self.scores_for(self.weights(terms), photo_ids)

    def scores_for(self, w: np.ndarray, photo_ids: np.ndarray) -> np.ndarray:
        """Scores of the given photos for class weights ``w`` (NaN for photos without logits)."""
        pos = np.searchsorted(self.cache.ids, photo_ids)
        pos = np.clip(pos, 0, max(len(self.cache.ids) - 1, 0))
        found = (self.cache.ids[pos] == photo_ids) if len(self.cache.ids) else np.zeros(len(photo_ids), bool)
        out = np.full(len(photo_ids), np.nan, dtype=np.float32)
        if found.any():
            out[found] = self.cache.scores(w, pos[found])
        return out

    def top(self, terms: Sequence[QueryTerm], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, photo ids) of the ``k`` best photos, best first (exact: a scan of n × TOPK)."""
        scores = self.cache.scores(self.weights(terms))
        k = min(k, len(scores))
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.lexsort((self.cache.ids[part], -scores[part]))]
        return scores[order], self.cache.ids[order]


def user_cache_dir() -> Path:
    """``$PHOTOCORPUS_CACHE_DIR``, else ``$XDG_CACHE_HOME/photocorpus``, else ``~/.cache/photocorpus``."""
    root = os.environ.get("PHOTOCORPUS_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "photocorpus"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
