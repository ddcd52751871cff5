"""Attribution for Creative Commons photos: who made it, under which licence, where it came from.

CC licences require crediting the photographer (MIRFLICKR-1M ships its images on exactly that
condition). Written as ``attribution.csv`` (title, owner, licence, source URL, plus ids) and a plain
``ATTRIBUTION.txt`` with one credit line per photo. Plain text on purpose: no markup to escape.
Titles and owners are strangers' text, so every CSV cell goes through
:func:`photocorpus.textsafety.csv_safe_cell`: a title such as ``=HYPERLINK(...)`` must not run as a
formula in the spreadsheet a curator opens the credits in.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path

from photocorpus.catalog_table import CatalogPhoto
from photocorpus.textsafety import csv_safe_row

_CC = re.compile(r"\bcc\b|\bcc0\b|\bcc[- ]by|creative\s*commons|public\s*domain", re.IGNORECASE)
COLUMNS = ("source", "source_id", "title", "owner", "license", "source_url", "file")


def is_creative_commons(license_text: str | None) -> bool:
    """True for Creative Commons licences and public-domain marks (``CC BY 2.0``, ``CC0 1.0``...)."""
    return bool(license_text) and bool(_CC.search(license_text or ""))


def _one_line(text: str | None) -> str:
    """Markup stripped (Flickr titles may hold HTML), entities unescaped, on one line."""
    from photocorpus.caption_text import strip_html

    return " ".join(strip_html(text).split())


def credit_line(
    *,
    title: str | None,
    owner: str | None,
    license: str | None,
    page_url: str | None,
    source: str,
    source_id: str,
    file: str | None = None,
) -> str:
    """The credit of one photo as plain text: ``"Title" by Owner, licence, source URL (file)``.

    One rule for ``ATTRIBUTION.txt`` and the photo page of ``photocorpus serve``, so what a person sees
    in the app is exactly what an export will credit.
    """
    url = page_url or f"{source}:{source_id}"
    where = f" ({file})" if file else ""
    title_text = _one_line(title) or "Untitled"
    owner_text = _one_line(owner) or "unknown"
    return f'"{title_text}" by {owner_text}, {_one_line(license)}, {url}{where}'


def write_attribution(out_dir: Path, photos: Iterable[tuple[CatalogPhoto, str | None]]) -> int:
    """Write the two attribution files for the CC photos among ``(photo, exported file)``; return count."""
    rows = [(p, f) for p, f in photos if is_creative_commons(p.license)]
    if not rows:
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    lines = ["Creative Commons photos in this export, with their credits.", ""]
    for photo, file in rows:
        writer.writerow(
            csv_safe_row(
                [
                    photo.source,
                    photo.source_id,
                    _one_line(photo.title),
                    _one_line(photo.owner),
                    _one_line(photo.license),
                    photo.page_url or "",
                    file or "",
                ]
            )
        )
        lines.append(
            credit_line(
                title=photo.title,
                owner=photo.owner,
                license=photo.license,
                page_url=photo.page_url,
                source=photo.source,
                source_id=photo.source_id,
                file=file,
            )
        )
    (out_dir / "attribution.csv").write_text(buf.getvalue(), encoding="utf-8")
    (out_dir / "ATTRIBUTION.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(rows)
