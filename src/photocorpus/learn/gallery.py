"""A search result as a standalone HTML thumbnail gallery.

The page lives in ``reports/search/`` and points at the corpus's own image files with relative URLs,
so it opens from disk (and keeps working if the corpus folder moves). Every piece of text on it
(query, captions, labels, ids) is HTML-escaped; file names are derived from a slug of the query, never
from the query itself.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from photocorpus import corpus_paths
from photocorpus.corpus_files import write_atomic

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.learn.search import Hit

SEARCH_REPORTS = "search"
CAPTION_CHARS = 160


def gallery_path(corpus: Corpus, query: str) -> Path:
    """``reports/search/<slug>-<hash>.html`` for a query (the slug is sanitised, the hash disambiguates)."""
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:40] or "query"
    digest = hashlib.sha1(query.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    name = corpus_paths.safe_component(f"{slug}-{digest}")
    return corpus.root / corpus_paths.REPORTS_DIR / SEARCH_REPORTS / f"{name}.html"


def render_gallery(
    hits: Sequence[Hit],
    *,
    title: str,
    subtitle: str,
    page: Path,
    query_image: Path | None = None,
    browser_urls: Mapping[int, str] | None = None,
) -> str:
    """The page's HTML. ``browser_urls`` maps photo ids on an object store to an https address a
    browser can open (``ObjectStore.browser_url``); a stored image without one is named, not shown."""
    esc = html.escape
    cards = []
    for hit in hits:
        if hit.path and "://" in hit.path:  # on an object store: shown only where a browser can fetch it
            url = (browser_urls or {}).get(hit.photo_id)
            if url is None and hit.path.startswith(("http://", "https://")):
                url = hit.path
            if url is not None:
                img = f"<img loading='lazy' src='{esc(url)}' alt='{esc(hit.source_id)}'>"
            else:
                img = f"<div class='missing'>{esc(hit.path)}</div>"
        elif hit.path:
            rel = os.path.relpath(hit.path, page.parent).replace(os.sep, "/")
            img = f"<img loading='lazy' src='{esc(quote(rel))}' alt='{esc(hit.source_id)}'>"
        else:
            img = "<div class='missing'>no image file</div>"
        caption = hit.caption if len(hit.caption) <= CAPTION_CHARS else hit.caption[: CAPTION_CHARS - 1] + "…"
        cards.append(
            "<figure>"
            f"{img}<figcaption><b>#{hit.rank}</b> <span class='score'>{hit.score:.3f}</span><br>"
            f"<span class='id'>{esc(hit.source_id)}</span> · {esc(hit.label)}"
            + (f"<br><span class='cap'>{esc(caption)}</span>" if caption else "")
            + "</figcaption></figure>"
        )
    example = ""
    if query_image is not None:
        example = (
            f"<p>Example image: <img class='example' src='{esc(query_image.absolute().as_uri())}' "
            f"alt='query image'></p>"
        )
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{esc(title)}</title>",
            "<style>body{font:14px system-ui,sans-serif;margin:20px;background:#fafafa}"
            "h1{font-size:20px;margin:0 0 4px}.sub{color:#666;margin:0 0 14px}"
            ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px}"
            "figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;overflow:hidden}"
            "figure img{width:100%;aspect-ratio:1;object-fit:cover;display:block}"
            "figcaption{padding:6px 8px;font-size:12px;line-height:1.35}.score{color:#06c}"
            ".id{color:#555;font-family:monospace}.cap{color:#333}.missing{aspect-ratio:1;display:flex;"
            "align-items:center;justify-content:center;color:#999}img.example{height:120px;vertical-align:top}"
            "</style></head><body>",
            f"<h1>{esc(title)}</h1><p class='sub'>{esc(subtitle)}</p>",
            example,
            f"<div class='grid'>{''.join(cards)}</div>" if cards else "<p>No results.</p>",
            "</body></html>",
        ]
    )


def write_gallery(
    corpus: Corpus,
    hits: Sequence[Hit],
    *,
    query: str,
    subtitle: str,
    out: Path | None = None,
    query_image: Path | None = None,
) -> Path:
    """Write the gallery page (atomically) and return its path."""
    page = (out or gallery_path(corpus, query)).absolute()
    page.parent.mkdir(parents=True, exist_ok=True)
    text = render_gallery(
        hits,
        title=f"Search: {query}",
        subtitle=subtitle,
        page=page,
        query_image=query_image,
        browser_urls=_browser_urls(corpus, hits),
    )
    write_atomic(page, text)
    return page


def _browser_urls(corpus: Corpus, hits: Sequence[Hit]) -> dict[int, str]:
    """https addresses of hits whose images live on the corpus's object store (s3:// on AWS, gs://),
    as the explore report links them; none for a local corpus or a store a browser cannot reach."""
    store = corpus.image_store
    if store is None:
        return {}
    paths = corpus.file_paths([hit.photo_id for hit in hits if hit.path])
    urls = {pid: store.browser_url(rel) for pid, rel in paths.items()}
    return {pid: url for pid, url in urls.items() if url}
