"""How a corpus, a stage's report and search results show in Jupyter (their ``_repr_html_``).

Everything shown is escaped with :func:`html.escape`: captions, labels, titles, ids and even our own
counts' keys come from strangers or from the catalog, and a notebook renders HTML as the page it sits
in. Thumbnails are embedded as ``data:`` URIs of small JPEGs (about 5 kB each) rather than linked by
path: a notebook is moved, shared, exported to HTML and rendered by viewers that cannot read the
corpus folder, and an embedded thumbnail survives all of that; a relative ``src`` breaks in each.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.corpus_files import ImageLocation

THUMBNAIL_PX = 160
THUMBNAIL_QUALITY = 80
CAPTION_CHARS = 200
MAX_ITEMS = 12  # dict and list values show at most this many entries
TOP_LABELS = 20

_TABLE = 'style="border-collapse:collapse;text-align:left"'
_CELL = 'style="padding:2px 8px;text-align:left;vertical-align:top"'


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _value_html(value: Any) -> str:
    """One report value: dataclasses as nested tables, mappings and lists shortened, text escaped."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return report_html(value, heading=False)
    if isinstance(value, Mapping):
        items = list(value.items())
        shown = ", ".join(f"{_esc(k)}={_esc(_short(v))}" for k, v in items[:MAX_ITEMS])
        return (shown + (f", … ({len(items) - MAX_ITEMS} more)" if len(items) > MAX_ITEMS else "")) or "–"
    if isinstance(value, list | tuple):
        if value and all(dataclasses.is_dataclass(v) for v in value):
            return "".join(report_html(v, heading=False) for v in value[:MAX_ITEMS])
        shown = ", ".join(_esc(_short(v)) for v in value[:MAX_ITEMS])
        return (shown + (f", … ({len(value) - MAX_ITEMS} more)" if len(value) > MAX_ITEMS else "")) or "–"
    if isinstance(value, float):
        return _esc(f"{value:,.3f}")
    if isinstance(value, int) and not isinstance(value, bool):
        return _esc(f"{value:,}")
    return _esc("–" if value is None else value)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, Mapping | list | tuple):
        return f"{type(value).__name__}({len(value)})"
    return str(value)


def report_html(report: Any, *, heading: bool = True) -> str:
    """A stage report as a two-column table of its fields (those marked ``repr=False`` left out).

    An interrupted run says so first, in words, because that is what a person must act on.
    """
    name = type(report).__name__
    rows = []
    for f in dataclasses.fields(report):
        if not f.repr or f.name == "interrupted":
            continue
        value = _value_html(getattr(report, f.name))
        rows.append(f"<tr><th {_CELL}>{_esc(f.name)}</th><td {_CELL}>{value}</td></tr>")
    parts = [f"<strong>{_esc(name)}</strong>"] if heading else []
    if getattr(report, "interrupted", False):
        parts.append("<p><em>Interrupted: run the same call again to resume.</em></p>")
    parts.append(f"<table {_TABLE}>{''.join(rows)}</table>")
    return f"<div>{''.join(parts)}</div>"


class HtmlReport:
    """Mixin of every stage's report dataclass: shows it as a table in Jupyter."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return report_html(self)


def _count_table(title: str, rows: Iterable[tuple[Any, ...]], header: Sequence[str]) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td {_CELL}>{_value_html(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    if not body:
        return ""
    head = "".join(f"<th {_CELL}>{_esc(h)}</th>" for h in header)
    return f"<h4>{_esc(title)}</h4><table {_TABLE}><tr>{head}</tr>{body}</table>"


def corpus_html(corpus: Corpus) -> str:
    """A corpus at a glance: photos and files, each stage's statuses, labels, splits, feature sets."""
    summary = corpus.status_summary()
    files = summary["files"]
    parts = [
        f"<strong>Corpus {_esc(corpus.root)}</strong>",
        f"<p>{summary['photos']:,} photos, {files['count']:,} stored files "
        f"({files['bytes'] / 1e6:,.1f} MB)</p>",
    ]
    statuses = ("done", "pending", "failed", "skipped")
    stages = sorted(summary["stages"].items())
    rows = ((stage, *(counts.get(s, 0) for s in statuses)) for stage, counts in stages)
    parts.append(_count_table("Stages", rows, ("stage", *statuses)))
    labels = list(summary["labels"].items())
    parts.append(_count_table("Labels", labels[:TOP_LABELS], ("label", "photos")))
    if len(labels) > TOP_LABELS:
        parts.append(f"<p>… and {len(labels) - TOP_LABELS:,} more labels</p>")
    curate = summary.get("curate") or {}
    splits = curate.get("splits") or {}
    if splits or curate.get("duplicates"):
        counts = [(name, splits.get(name, 0)) for name in ("train", "val", "test")]
        counts.append(("duplicates", curate.get("duplicates", 0)))
        parts.append(_count_table("Curation", counts, ("", "photos")))
    parts.append(
        _count_table(
            "Feature sets",
            ((f["name"], f["rows"], f["dims"]) for f in summary["feature_sets"]),
            ("name", "rows", "dims"),
        )
    )
    return f"<div>{''.join(parts)}</div>"


def thumbnail_data_uri(location: ImageLocation, px: int = THUMBNAIL_PX) -> str | None:
    """A small JPEG of a stored image as a ``data:`` URI, or None when it cannot be read or decoded."""
    from PIL import Image, ImageOps

    from photocorpus.corpus_files import open_image_bytes

    try:
        data = open_image_bytes(location)
        with Image.open(io.BytesIO(data)) as opened:
            if opened.format == "JPEG":
                opened.draft("RGB", (px, px))
            image = ImageOps.exif_transpose(opened).convert("RGB")
            image.thumbnail((px, px))
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=THUMBNAIL_QUALITY)
    except Exception:  # a missing or broken file shows as "no image", never breaks the display
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def results_html(title: str, subtitle: str, cards: Sequence[Mapping[str, Any]]) -> str:
    """A grid of result cards: thumbnail, rank, score, label and caption (all text escaped).

    Each card is a mapping with ``rank``, ``score``, ``label``, ``caption``, ``source_id`` and
    ``thumbnail`` (a data URI or None).
    """
    items = []
    for card in cards:
        caption = str(card["caption"] or "")
        if len(caption) > CAPTION_CHARS:
            caption = caption[: CAPTION_CHARS - 1] + "…"
        thumb = card.get("thumbnail")
        image = (
            f'<img src="{thumb}" alt="{_esc(card["source_id"])}" '
            f'style="max-width:{THUMBNAIL_PX}px;max-height:{THUMBNAIL_PX}px"/>'
            if thumb
            else f'<div style="width:{THUMBNAIL_PX}px;height:{THUMBNAIL_PX // 2}px">(no image)</div>'
        )
        items.append(
            f'<figure style="display:inline-block;vertical-align:top;width:{THUMBNAIL_PX + 8}px;margin:4px">'
            f"{image}<figcaption><strong>#{card['rank']}</strong> {float(card['score']):.3f} "
            f"<em>{_esc(card['label'])}</em><br/>{_esc(caption)}</figcaption></figure>"
        )
    head = f"<strong>{_esc(title)}</strong><p>{_esc(subtitle)}</p>"
    return f"<div>{head}{''.join(items) or '<p>No results.</p>'}</div>"
