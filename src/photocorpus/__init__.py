"""photocorpus: turn social photo sites and local folders into research-grade image datasets.

A corpus is a folder (settings, one SQLite catalog, images, features, reports); every stage is a
function of it, with one convention (see :mod:`photocorpus.api`)::

    import photocorpus as pc

    corpus = pc.init("mycorpus")                      # or pc.open("mycorpus")
    pc.import_folder(corpus, "~/InstaNY100K")          # corpus first, settings as keywords,
    pc.featurize(corpus, batch_size=64)                # progress= and stop= optional,
    pc.curate_photos(corpus)                           # a report with .interrupted back
    corpus.photos(label="newyork", split="train")      # the catalog as a pandas DataFrame
    pc.search(corpus, "sunset over the river", k=20)   # thumbnails in Jupyter

Corpora: ``init``, ``open`` (a :class:`Corpus`). Sources: ``import_folder``, ``harvest_flickr``,
``harvest_instagram``, ``harvest_urls``. Stages: ``fetch_photos``, ``curate_photos``, ``featurize``,
``embed_captions``, ``fuse_features``, ``enrich_flickr``, ``explore_photos``, ``train_classifier``,
``train_semantic``.
Use: ``search``, ``evaluate``, ``export_photos``. Human decisions, kept by every later stage:
``confirm_group``, ``split_group``, ``mark_not_duplicate``, ``exclude_photos``, ``include_photos``,
``set_label``, ``set_bot``, ``set_quality``, ``add_note``, ``undo_decision``, ``decision_history``.
Types: :class:`StopFlag` (``stop=``), :data:`Progress` and :class:`ProgressUpdate` (``progress=``),
:class:`PhotocorpusError` (the base of every error we raise; :class:`ParameterError` for a bad
argument). ``__version__`` is this release; ``USER_AGENT`` is what fetch and harvest send.

Every name is loaded on first use (PEP 562), so ``import photocorpus`` and ``photocorpus --help``
import none of the stages, numpy or torch.
"""

from __future__ import annotations

import importlib

from photocorpus.version import USER_AGENT, __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a third of our import time)

__all__ = [
    "USER_AGENT",
    "Corpus",
    "ParameterError",
    "PhotocorpusError",
    "Progress",
    "ProgressUpdate",
    "StopFlag",
    "__version__",
    "add_note",
    "confirm_group",
    "curate_photos",
    "decision_history",
    "embed_captions",
    "enrich_flickr",
    "evaluate",
    "exclude_photos",
    "explore_photos",
    "export_photos",
    "featurize",
    "fetch_photos",
    "fuse_features",
    "harvest_flickr",
    "harvest_instagram",
    "harvest_urls",
    "import_folder",
    "include_photos",
    "init",
    "mark_not_duplicate",
    "open",
    "search",
    "set_bot",
    "set_label",
    "set_quality",
    "split_group",
    "train_classifier",
    "train_semantic",
    "undo_decision",
]

# where each lazily loaded name is defined; everything else of __all__ comes from photocorpus.api
_HOMES = {
    "Corpus": "photocorpus.corpus",
    "ParameterError": "photocorpus.errors",
    "PhotocorpusError": "photocorpus.errors",
    "Progress": "photocorpus.progress",
    "ProgressUpdate": "photocorpus.progress",
    "StopFlag": "photocorpus.interrupt",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from typing import Any

    from photocorpus.api import (
        add_note,
        confirm_group,
        curate_photos,
        decision_history,
        embed_captions,
        enrich_flickr,
        evaluate,
        exclude_photos,
        explore_photos,
        export_photos,
        featurize,
        fetch_photos,
        fuse_features,
        harvest_flickr,
        harvest_instagram,
        harvest_urls,
        import_folder,
        include_photos,
        init,
        mark_not_duplicate,
        open,
        search,
        set_bot,
        set_label,
        set_quality,
        split_group,
        train_classifier,
        train_semantic,
        undo_decision,
    )
    from photocorpus.corpus import Corpus
    from photocorpus.errors import ParameterError, PhotocorpusError
    from photocorpus.interrupt import StopFlag
    from photocorpus.progress import Progress, ProgressUpdate


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'photocorpus' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES.get(name, "photocorpus.api")), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
