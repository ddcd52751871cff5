"""A saved semantic model as search sees it: its ``model.json`` now, its torch weights only if needed.

Why: a text search needs the model's text space, its image feature set and its fingerprint (which
names the persisted search index), all in ``model.json``. The torch module is needed only to embed
photos the index lacks: the first search after training, or after photos were featurized. Importing
torch costs a CLI search about 3 s on 2 cores, so :class:`SemanticHandle` loads the weights on the
first :meth:`~SemanticHandle.embed` and a search against an up-to-date index never imports torch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from photocorpus.learn import registry
from photocorpus.learn.dataset import LearnError

if TYPE_CHECKING:
    import numpy as np

    from photocorpus.corpus import Corpus
    from photocorpus.learn.semantic import LoadedSemantic


@dataclass
class SemanticHandle:
    """A semantic model read from the corpus: description now, weights on first use."""

    corpus: Corpus
    entry: registry.ModelEntry
    info: dict[str, Any]

    @property
    def text_space(self) -> str:
        return str(self.info["text"])

    @property
    def fingerprint(self) -> str:
        return str(self.info["fingerprint"])

    @functools.cached_property
    def loaded(self) -> LoadedSemantic:
        """The torch model (imports torch; called only when photos must be embedded)."""
        from photocorpus.learn.semantic import load_semantic

        return load_semantic(self.corpus, self.entry.name)

    def embed(self, features: np.ndarray) -> np.ndarray:
        """Unit-length joint-space vectors for rows of image features (see ``SemanticModel.embed``)."""
        return self.loaded.embed(features)

    @property
    def finetuned(self) -> bool:
        """Whether the model tuned the CNN's last blocks: its photo vectors are stored with it."""
        return bool(self.info.get("finetune"))

    @functools.cached_property
    def stored(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted photo ids, joint-space vectors) a fine-tuned model saved for every photo with a file."""
        import numpy as np

        folder = self.entry.folder(self.corpus)
        ids = np.load(folder / registry.PHOTO_IDS_FILE)
        vectors = np.load(folder / registry.EMBEDDINGS_FILE, mmap_mode="r")
        order = np.argsort(ids, kind="stable")
        return ids[order], np.asarray(vectors)[order]

    def stored_embeddings(self, photo_ids: np.ndarray) -> np.ndarray:
        """A fine-tuned model's stored vectors of ``photo_ids`` (zero rows for photos it has none of)."""
        import numpy as np

        ids, vectors = self.stored
        pos = np.clip(np.searchsorted(ids, photo_ids), 0, max(len(ids) - 1, 0))
        found = ids[pos] == photo_ids if len(ids) else np.zeros(len(photo_ids), bool)
        out = np.zeros((len(photo_ids), vectors.shape[1]), dtype=np.float32)
        out[found] = vectors[pos[found]]
        return out


def open_semantic(corpus: Corpus, name: str | None = None) -> SemanticHandle:
    """The semantic model named, or the newest one, without loading its weights.

    The kind and format are checked here, as ``load_semantic`` does, so a wrong name fails at once
    rather than at the first photo to embed.
    """
    if name is None:
        found = registry.list_models(corpus, "semantic")
        if not found:
            raise LearnError("no semantic model in this corpus; train one with `photocorpus train semantic`")
        entry = found[0]
    else:
        entry = registry.get_model(corpus, name)
    if entry.kind != "semantic":
        raise LearnError(f"model {entry.name!r} is a {entry.kind} model, not a semantic model")
    info = registry.read_model_json(corpus, entry)
    if int(info.get("format", 0)) != registry.SEMANTIC_FORMAT_VERSION:
        raise LearnError(f"model {entry.name!r} has format {info.get('format')}; train it again")
    return SemanticHandle(corpus=corpus, entry=entry, info=info)
