"""The result types that only the Python API builds (the stages' own reports are theirs).

A stage that returns a list, a count or a dict (caption embeddings, exports, evaluation) gets a
dataclass here, so that every function of :mod:`photocorpus.api` returns one object with
``.interrupted`` and a Jupyter view. :class:`SearchResults` is what ``pc.search`` returns: the hits,
how the query was understood, and thumbnails when shown in a notebook.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from photocorpus.notebook import HtmlReport, results_html, thumbnail_data_uri

if TYPE_CHECKING:
    import pandas as pd

    from photocorpus.corpus_files import ImageLocation
    from photocorpus.features.text_embed import TextReport
    from photocorpus.learn.search import Hit

MAX_THUMBNAILS = 100  # a notebook cell with more embedded images gets slow to save and to scroll


@dataclass
class SearchResults:
    """The photos that best match a text query or an example image, best first.

    Iterate it, index it or ``len()`` it like the list of :class:`~photocorpus.learn.search.Hit` it
    holds; ``to_frame()`` gives a pandas DataFrame. In Jupyter it shows each photo's thumbnail with its
    rank, score, label and caption. Search is a query, not a stage: it is never interrupted, and
    ``interrupted`` is there only so that every API result answers it.
    """

    hits: list[Hit]
    query: str | None
    image: str | None
    method: str  # semantic:<model>, bridge:<logits set> or features:<feature set>
    explanation: str = ""  # how the query was understood (the bridge names its ImageNet classes)
    index_kind: str = ""  # flat, ivf or hnsw; empty when the search used no index (the bridge)
    index_count: int = 0  # photos in the index
    index_action: str = ""  # what this search did to the index: loaded, built or updated
    locations: dict[int, ImageLocation] = field(default_factory=dict, repr=False)
    interrupted: bool = False
    _thumbnails: dict[int, str | None] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    @overload
    def __getitem__(self, i: int) -> Hit: ...
    @overload
    def __getitem__(self, i: slice) -> list[Hit]: ...
    def __getitem__(self, i: int | slice) -> Hit | list[Hit]:
        return self.hits[i]

    @property
    def title(self) -> str:
        return f"Search: {self.query}" if self.query is not None else f"Search by image: {self.image}"

    @property
    def subtitle(self) -> str:
        parts = [f"{len(self.hits)} results by {self.hits[0].method if self.hits else self.method}"]
        if self.explanation:
            parts.append(self.explanation)
        text = "; ".join(parts)
        return f"{text} ({self.index_kind} index of {self.index_count} photos)" if self.index_kind else text

    def to_frame(self) -> pd.DataFrame:
        """The hits as a DataFrame: rank, score, photo_id, source_id, label, caption, path, method."""
        import pandas as pd

        from photocorpus.learn.search import Hit

        columns = list(Hit.__dataclass_fields__)
        return pd.DataFrame([h.to_json() for h in self.hits], columns=columns)

    def thumbnail(self, photo_id: int) -> str | None:
        """A small JPEG of a result as a ``data:`` URI (made once, then kept), or None without an image."""
        if photo_id not in self._thumbnails:
            location = self.locations.get(photo_id)
            self._thumbnails[photo_id] = thumbnail_data_uri(location) if location is not None else None
        return self._thumbnails[photo_id]

    def _repr_html_(self) -> str:
        cards = [
            {
                "rank": h.rank,
                "score": h.score,
                "label": h.label,
                "caption": h.caption,
                "source_id": h.source_id,
                "thumbnail": self.thumbnail(h.photo_id) if h.rank <= MAX_THUMBNAILS else None,
            }
            for h in self.hits
        ]
        return results_html(self.title, self.subtitle, cards)


@dataclass
class CaptionEmbeddingReport(HtmlReport):
    """What one ``embed_captions`` call did: one run per text model (``word2vec`` makes two sets)."""

    runs: list[TextReport] = field(default_factory=list)
    interrupted: bool = False

    @property
    def feature_sets(self) -> list[str]:
        return [name for run in self.runs for name in run.feature_sets]


@dataclass
class ExportReport(HtmlReport):
    """What one export wrote: the format, where, and its counts (images, rows, files, shards...)."""

    format: str
    out: Path
    counts: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # exports run to the end: there is nothing to resume


@dataclass
class EvaluationReport(HtmlReport):
    """Retrieval scores: mAP of label queries, or P@k of judged queries (see
    :mod:`photocorpus.learn.evaluate` for the keys of ``result``)."""

    result: dict[str, Any]
    interrupted: bool = False  # evaluation is a read-only pass: there is nothing to resume

    @property
    def method(self) -> str:
        return str(self.result["method"])

    @property
    def mean_average_precision(self) -> float | None:
        """The mAP of label queries (None for judged queries, or when no query has a positive)."""
        return self.result.get("mAP")

    def as_dict(self) -> dict[str, Any]:
        return self.result
