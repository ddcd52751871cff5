"""A photo's tag list as one caption vector: the target a semantic model learns from tagged photos.

Flickr and MIRFLICKR photos come with a *list* of user tags (``cigarette tattoos smoke red dress``), not
a sentence. Embedding that list as if it were a sentence (the tags joined by spaces, through MiniLM)
makes a word salad that the encoder reads as one odd phrase; embedding each tag alone and pooling the
vectors keeps every tag's meaning and lets a concept query ("dog", embedded as a one-tag caption) land
where photos tagged ``dog`` land. Measured on the shared MIRFLICKR photos (docs/benchmarks.md, "Learning
from web data"), so the pooling is a choice, recorded in the feature set's model id:

* ``mean``: the mean of the unit per-tag MiniLM vectors, made unit length (the default);
* ``joined``: the tags joined by spaces, embedded as one sentence (what a plain caption gets).

A photo's tags are the source's tag list (``photos.tags``: Flickr, MIRFLICKR sidecars), else its
hashtags (Instagram), cleaned as hashtags (NFKC, lower case, ``#`` dropped), repeats removed.
Per-tag vectors are cached per process by tag, so the 4.6 tags of a MIRFLICKR photo cost one encoder
call per *new* tag, not per photo.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from photocorpus.caption_text import clean_hashtags

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

TAG_POOLINGS = ("mean", "joined")
DEFAULT_TAG_POOLING = "mean"

TextEncoder = Callable[[Sequence[str]], np.ndarray]


def photo_tags(corpus: Corpus, photo_ids: Sequence[int]) -> dict[int, list[str]]:
    """Cleaned tag list per photo id (``[]`` when it has none): ``photos.tags``, else its hashtags."""
    out: dict[int, list[str]] = {}
    sql = "SELECT id, tags, hashtags FROM photos WHERE id IN ({marks})"
    for photo_id, tags, hashtags in corpus.select_in(sql, [int(i) for i in photo_ids]):
        out[int(photo_id)] = clean_hashtags(_json_list(tags)) or clean_hashtags(_json_list(hashtags))
    return {int(i): out.get(int(i), []) for i in photo_ids}


def _json_list(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw or "[]")
    except json.JSONDecodeError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class TagPooler:
    """Turns tag lists into unit vectors with one text encoder, caching each tag's vector."""

    def __init__(self, encode: TextEncoder, pooling: str = DEFAULT_TAG_POOLING) -> None:
        if pooling not in TAG_POOLINGS:
            raise ValueError(f"tag pooling must be one of {', '.join(TAG_POOLINGS)}, not {pooling!r}")
        self.encode = encode
        self.pooling = pooling
        self._tag_vectors: dict[str, np.ndarray] = {}

    def tag_vectors(self, tags: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``tags`` (rows in order), encoding only tags not seen before."""
        new = [t for t in dict.fromkeys(tags) if t not in self._tag_vectors]
        if new:
            for tag, vec in zip(new, np.asarray(self.encode(new), dtype=np.float32), strict=True):
                self._tag_vectors[tag] = vec / max(float(np.linalg.norm(vec)), 1e-12)
        return np.stack([self._tag_vectors[t] for t in tags])

    def pool(self, tag_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """One unit vector per tag list (a zero row for an empty list, as for a photo without text)."""
        if not tag_lists:
            return np.zeros((0, 0), dtype=np.float32)
        if self.pooling == "joined":
            vecs = np.asarray(self.encode([" ".join(tags) for tags in tag_lists]), dtype=np.float32)
        else:
            self.tag_vectors([t for tags in tag_lists for t in tags])
            dim = len(next(iter(self._tag_vectors.values()))) if self._tag_vectors else 0
            vecs = np.zeros((len(tag_lists), dim), dtype=np.float32)
            for row, tags in enumerate(tag_lists):
                if tags:
                    vecs[row] = self.tag_vectors(list(dict.fromkeys(tags))).mean(axis=0)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return np.where(norms > 1e-12, vecs / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
