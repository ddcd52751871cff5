"""The explore report: a static folder (``index.html`` + data + thumbnails) that opens from the file system.

What is in the folder::

    index.html            header with corpus stats, colour-by switch, legend, maps, cluster galleries
    static/               report.js + report.css (our glue) and regl-scatterplot (WebGL), vendored
    data/points.js        coordinates, category codes, photo and thumbnail ids (base64 typed arrays)
    data/text-00000.js    captions, titles, owners and links, 2,000 points per file, loaded only
                          when a point of that chunk is hovered or clicked; gzipped JSON in base64,
                          which the browser inflates with its built-in DecompressionStream
    data/search.js        only with a search index (see :class:`SearchIndex`)
    thumbs/<k>/<id>.jpg   hard links to the corpus's thumbnail cache

Why data in ``.js`` files: browsers refuse ``fetch()`` of local files from a ``file://`` page, but
load classic scripts. Why chunks: 100k captions are megabytes that nobody needs before hovering.
Why gzip: text is most of a big report's bytes, and a file:// page gets no transfer compression.

Safety: user text (captions, titles, tags, owners, labels, queries) reaches the page either through
Jinja2 with autoescaping, or as JSON data that report.js only ever assigns with ``textContent``. The
JSON is also written with ``<``, ``>`` and ``&`` escaped, so even inlined it could not close a tag.

Search (extension point for the learn stage): pass ``ReportData.search`` a :class:`SearchIndex`, a
set of text queries with the photos a semantic model ranked for each, computed at build time (a static
page has no model to embed new text with). The page then shows a search box offering those queries;
choosing one highlights the photos on every map and lists them best first. Without an index there is
no search box at all.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from photocorpus.corpus_files import publish_dir
from photocorpus.explore.cluster import ClusterSummary
from photocorpus.explore.thumbs import link_thumbnails, report_relpath
from photocorpus.search_index import SearchIndex

__all__ = [
    "MAX_CATEGORIES",
    "PALETTE",
    "TEXT_CHUNK",
    "Facet",
    "Gallery",
    "MapView",
    "PointText",
    "ReportData",
    "SearchIndex",
    "make_facet",
    "points_payload",
    "script_json",
    "shorten",
    "text_chunk_script",
    "write_report",
]

TEXT_CHUNK = 2_000
CAPTION_CHARS = 160
MAX_CATEGORIES = 32  # legend entries per facet; beyond that the rarest fold into "other"
NONE_CATEGORY = "(none)"
OTHER_CATEGORY = "(other)"
STATIC_FILES = ("report.js", "report.css", "regl-scatterplot.bundle.min.js", "LICENSES.txt")

# 32 distinguishable colours (Tableau 20 followed by 12 from Kelly's list), then grey for none/other.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#f3c300", "#875692", "#f38400", "#a1caf1",
    "#be0032", "#c2b280", "#008856", "#e68fac", "#0067a5", "#f99379", "#604e97", "#dcd300",
)  # fmt: skip
GREY = "#c8c8c8"


@dataclass
class MapView:
    """One 2-D map of the points (any scale: it is fitted to the canvas keeping its aspect)."""

    key: str
    title: str
    coords: np.ndarray  # (n, 2)
    note: str = ""


@dataclass
class Facet:
    """A way to colour the points: a category per point (``codes`` index ``categories``, -1 = none)."""

    key: str
    title: str
    categories: list[str]
    codes: np.ndarray


@dataclass
class PointText:
    """Per-point text, aligned with the points; shown on hover, never parsed as HTML."""

    captions: Sequence[str]
    titles: Sequence[str]
    owners: Sequence[str]
    links: Sequence[str]  # URL relative to index.html (or absolute) that a click opens; "" for none


@dataclass
class Gallery:
    """A cluster gallery per cluster of ``facet_key``: its summary and the photos nearest its centre."""

    facet_key: str
    title: str
    summaries: list[ClusterSummary]


@dataclass
class ReportData:
    """Everything a report shows; :func:`write_report` turns it into a folder."""

    title: str
    photo_ids: np.ndarray
    maps: list[MapView]
    facets: list[Facet]
    default_facet: str
    text: PointText
    thumb_paths: dict[int, Path]  # thumbnail id -> cached file to link
    thumb_ids: np.ndarray | None = None  # which thumbnail each point shows (default: its photo's)
    tooltip_facets: list[str] = field(default_factory=list)  # facet values shown on hover
    galleries: list[Gallery] = field(default_factory=list)
    stats: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    search: SearchIndex | None = None
    photo_text: dict[int, tuple[str, str]] = field(default_factory=dict)  # gallery: id -> (caption, link)


def shorten(text: str | None, limit: int = CAPTION_CHARS) -> str:
    """Whitespace collapsed and cut at a word boundary near ``limit`` characters, with an ellipsis."""
    flat = " ".join((text or "").split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


def make_facet(
    key: str, title: str, values: Sequence[str | None], *, max_categories: int = MAX_CATEGORIES
) -> Facet:
    """A facet from per-point values: categories by frequency, the rarest folded into "(other)"."""
    from collections import Counter

    counts = Counter(v for v in values if v is not None and v != "")
    ranked = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if len(ranked) > max_categories:
        ranked = [*ranked[: max_categories - 1], OTHER_CATEGORY]
    index = {c: i for i, c in enumerate(ranked)}
    other = index.get(OTHER_CATEGORY, -1)
    codes = np.fromiter(
        (-1 if (v is None or v == "") else index.get(v, other) for v in values),
        dtype=np.int64,
        count=len(values),
    )
    return Facet(key, title, ranked, codes)


# -------------------------------------------------------------------------------------------- writing
def _b64(array: np.ndarray) -> str:
    return base64.b64encode(
        np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    ).decode()


def script_json(value: Any) -> str:
    """JSON safe to put anywhere in a page: ``<``, ``>``, ``&`` and line separators escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for raw, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, esc)
    return text


def _fit(coords: np.ndarray) -> np.ndarray:
    """Coordinates centred and scaled into [-0.95, 0.95], keeping the aspect ratio (NaN -> centre)."""
    c = np.asarray(coords, dtype=np.float64)
    finite = np.isfinite(c).all(axis=1)
    if not finite.any():
        return np.zeros_like(c, dtype=np.float32)
    lo, hi = c[finite].min(axis=0), c[finite].max(axis=0)
    scale = float(max(hi - lo)) / 2 or 1.0
    out = (c - (lo + hi) / 2) / scale * 0.95
    out[~finite] = 0.0
    return out.astype(np.float32)


def _id_array(ids: np.ndarray) -> tuple[str, str]:
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0 or (ids.min() >= 0 and ids.max() < 2**32):
        return "u32", _b64(ids.astype(np.uint32))
    return "f64", _b64(ids.astype(np.float64))  # exact up to 2^53


def _facet_payload(facet: Facet, n: int) -> dict[str, Any]:
    if len(facet.codes) != n:
        raise ValueError(f"facet {facet.key!r} has {len(facet.codes)} codes for {n} points")
    categories = list(facet.categories)
    codes = np.asarray(facet.codes, dtype=np.int64)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(categories), codes)
        categories.append(NONE_CATEGORY)
    colors = [
        GREY if c in (NONE_CATEGORY, OTHER_CATEGORY) else PALETTE[i % len(PALETTE)]
        for i, c in enumerate(categories)
    ]
    counts = np.bincount(codes, minlength=len(categories)).tolist()
    dtype, width = (np.uint8, "u8") if len(categories) <= 256 else (np.uint16, "u16")
    return {
        "key": facet.key,
        "title": facet.title,
        "categories": categories,
        "colors": colors,
        "counts": counts,
        "codes": _b64(codes.astype(dtype)),
        "dtype": width,
    }


def facet_colors(facet: Facet) -> list[str]:
    """The colour of each category of ``facet`` as the page draws it (for the static PNGs)."""
    return [
        GREY if c in (NONE_CATEGORY, OTHER_CATEGORY) else PALETTE[i % len(PALETTE)]
        for i, c in enumerate(facet.categories)
    ]


def points_payload(data: ReportData, thumb_ids: np.ndarray, has_thumb: np.ndarray) -> dict[str, Any]:
    """What ``data/points.js`` holds (``window.PHOTOCORPUS_POINTS``, read by report.js): ids, thumbnail
    ids, map coordinates and facet codes as base64 typed arrays. ``photocorpus serve`` sends the same
    payload from its map route, so report.js draws both."""
    n = len(data.photo_ids)
    keys = [f.key for f in data.facets]
    id_type, id_b64 = _id_array(data.photo_ids)
    thumb_type, thumb_b64 = _id_array(np.where(has_thumb, thumb_ids, 0))
    return {
        "n": n,
        "title": data.title,
        "ids": {"dtype": id_type, "data": id_b64},
        "thumbs": {"dtype": thumb_type, "data": thumb_b64, "has": _b64(has_thumb.astype(np.uint8))},
        "thumbDirSize": 1000,
        "maps": [
            {"key": m.key, "title": m.title, "note": m.note, "xy": _b64(_fit(m.coords).reshape(-1))}
            for m in data.maps
        ],
        "facets": [_facet_payload(f, n) for f in data.facets],
        "defaultFacet": data.default_facet,
        "tooltipFacets": [k for k in data.tooltip_facets if k in keys],
        "textChunk": TEXT_CHUNK,
        "textChunks": math.ceil(n / TEXT_CHUNK),
        "search": data.search is not None,
    }


def text_chunk_script(data: ReportData, chunk: int) -> str:
    """``data/text-NNNNN.js``: the hover text of points ``chunk * TEXT_CHUNK`` onwards, gzipped JSON in
    base64 handed to ``window.photocorpusText``."""
    text = data.text
    n = len(data.photo_ids)
    lo, hi = chunk * TEXT_CHUNK, min(n, (chunk + 1) * TEXT_CHUNK)
    rows = [
        [shorten(text.captions[i]), shorten(text.titles[i], 100), shorten(text.owners[i], 60), text.links[i]]
        for i in range(lo, hi)
    ]
    packed = base64.b64encode(gzip.compress(script_json(rows).encode("utf-8"), mtime=0)).decode("ascii")
    return f'window.photocorpusText({chunk},"{packed}");\n'


def write_report(data: ReportData, out_dir: str | os.PathLike[str]) -> Path:
    """Write the report folder (replacing an older one only once the new one is complete)."""
    out = Path(out_dir)
    n = len(data.photo_ids)
    if n == 0:
        from photocorpus.explore.errors import ExploreError

        raise ExploreError("nothing to show: the report has no points")
    for m in data.maps:
        if len(m.coords) != n:
            raise ValueError(f"map {m.key!r} has {len(m.coords)} points, expected {n}")
    keys = [f.key for f in data.facets]
    if data.default_facet not in keys:
        raise ValueError(f"default facet {data.default_facet!r} is not one of {keys}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    (tmp / "static").mkdir()
    static = resources.files("photocorpus.explore.report").joinpath("static")
    for name in STATIC_FILES:
        (tmp / "static" / name).write_bytes(static.joinpath(name).read_bytes())

    thumb_ids = np.asarray(data.photo_ids if data.thumb_ids is None else data.thumb_ids, dtype=np.int64)
    has_thumb = np.fromiter((int(t) in data.thumb_paths for t in thumb_ids), dtype=bool, count=n)
    link_thumbnails(data.thumb_paths, tmp)

    points = points_payload(data, thumb_ids, has_thumb)
    (tmp / "data" / "points.js").write_text(
        f"window.PHOTOCORPUS_POINTS={script_json(points)};\n", encoding="utf-8"
    )
    for chunk in range(points["textChunks"]):
        (tmp / "data" / f"text-{chunk:05d}.js").write_text(text_chunk_script(data, chunk), encoding="utf-8")
    queries: list[str] = []
    if data.search is not None:
        position = {int(pid): i for i, pid in enumerate(data.photo_ids)}
        resolved = {
            q: [position[int(p)] for p in ranked if int(p) in position]
            for q, ranked in data.search.queries.items()
        }
        queries = sorted(resolved)
        payload = {"model": data.search.model, "queries": resolved}
        (tmp / "data" / "search.js").write_text(
            f"window.PHOTOCORPUS_SEARCH={script_json(payload)};\n", encoding="utf-8"
        )

    (tmp / "index.html").write_text(
        _render_html(data, points, queries, thumb_ids, has_thumb), encoding="utf-8"
    )
    publish_dir(tmp, out)
    return out / "index.html"


def _gallery_items(data: ReportData, thumb_of: dict[int, int], photo_ids: list[int]) -> list[dict[str, str]]:
    items = []
    for pid in photo_ids:
        caption, link = data.photo_text.get(pid, ("", ""))
        thumb = thumb_of.get(pid)
        items.append({
            "thumb": report_relpath(thumb) if thumb is not None else "",
            "caption": shorten(caption, 100),
            "link": link,
            "photo_id": str(pid),
        })  # fmt: skip
    return items


def _render_html(
    data: ReportData, points: dict[str, Any], queries: list[str], thumb_ids: np.ndarray, has_thumb: np.ndarray
) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("photocorpus.explore.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    thumb_of = {int(p): int(t) for p, t, h in zip(data.photo_ids, thumb_ids, has_thumb, strict=True) if h}
    facet_index = {f.key: i for i, f in enumerate(data.facets)}
    galleries = []
    for g_number, gallery in enumerate(data.galleries):
        galleries.append({
            "id": f"g{g_number}",
            "title": gallery.title,
            "facet": gallery.facet_key,
            "facet_index": facet_index.get(gallery.facet_key, -1),
            "clusters": [
                {
                    "dom_id": f"g{g_number}-c{s.cluster}",
                    "cluster": s.cluster,
                    "size": s.size,
                    "labels": s.top_labels,
                    "categories": s.top_categories,
                    "terms": s.top_terms,
                    "source_labels": s.source_labels,
                    "items": _gallery_items(data, thumb_of, s.closest),
                }
                for s in gallery.summaries
            ],
        })  # fmt: skip
    return env.get_template("index.html").render(
        title=data.title,
        stats=data.stats,
        notes=data.notes,
        maps=points["maps"],
        facets=[{"key": f.key, "title": f.title} for f in data.facets],
        default_facet=data.default_facet,
        galleries=galleries,
        search=data.search,
        queries=queries,
        built_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
