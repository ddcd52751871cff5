"""What every export shares: split and size arguments, unique safe names, JPEG bytes of a photo.

The rows themselves (one joined, decoded row per photo, in catalog-id order) come from
:mod:`photocorpus.catalog_table`, which ``corpus.photos()`` reads too.

Exports only read the catalog; they never change it. Untrusted text (captions, titles, ids, labels)
never chooses a path: file and folder names come from :func:`photocorpus.corpus_paths.safe_component`, and
a name that two photos would share gets the catalog id appended.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from photocorpus.catalog_table import SPLITS, CatalogPhoto
from photocorpus.corpus import Corpus
from photocorpus.corpus_files import ImageLocation, open_image_bytes
from photocorpus.corpus_paths import safe_component
from photocorpus.errors import PhotocorpusError

JPEG_QUALITY = 90


class ExportError(PhotocorpusError):
    """An export was asked for something it cannot do (unknown format or split, bad size)."""


def parse_splits(values: Iterable[str] | None) -> set[str] | None:
    """Split names (a list, each possibly comma-separated; ``all`` means no filter) as a set or ``None``."""
    wanted: set[str] = set()
    for value in values or ():
        for part in str(value).split(","):
            part = part.strip().lower()
            if part:
                wanted.add(part)
    if not wanted or "all" in wanted:
        return None
    unknown = wanted - set(SPLITS)
    if unknown:
        raise ExportError(f"unknown split {', '.join(sorted(unknown))}; use train, val, test or all")
    return wanted


def parse_size(value: str | None) -> tuple[int, int] | None:
    """``300x300`` -> (300, 300); ``None`` keeps the stored images as they are."""
    if not value:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise ExportError(f"size must look like 300x300, not {value!r}") from None
    if not (1 <= w <= 20000 and 1 <= h <= 20000):
        raise ExportError(f"size {value} is out of range (1..20000 per side)")
    return w, h


class UniqueNames:
    """Safe file stems, unique within each folder: a clash gets ``-p<catalog id>`` appended."""

    def __init__(self) -> None:
        self._used: set[tuple[str, str]] = set()

    def stem(self, folder: str, photo: CatalogPhoto) -> str:
        stem = safe_component(photo.source_id)
        if (folder, stem) in self._used:
            stem = safe_component(f"{photo.source_id}-p{photo.photo_id}")
        self._used.add((folder, stem))
        return stem


def image_jpeg(corpus: Corpus, photo: CatalogPhoto, size: tuple[int, int] | None) -> bytes:
    """The photo's image as JPEG bytes (see :func:`jpeg_from_file`)."""
    if photo.path is None:
        raise ExportError(f"photo {photo.source}:{photo.source_id} has no stored image")
    return jpeg_from_file(corpus.image_location(photo.path), photo.format, size)


def jpeg_from_file(path: ImageLocation, fmt: str | None, size: tuple[int, int] | None) -> bytes:
    """JPEG bytes of a stored image (a local file or an object): its bytes untouched when it is a JPEG
    and no size is asked, else decoded upright and, with ``size``, scaled to cover it and centre-cropped."""
    from PIL import Image, ImageOps

    data = open_image_bytes(path)
    if size is None and (fmt or "").upper() == "JPEG":
        return data
    with Image.open(io.BytesIO(data)) as opened:
        if size is not None and opened.format == "JPEG":
            opened.draft("RGB", size)
        im = ImageOps.exif_transpose(opened)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        im = im.convert("RGB")
        if size is not None:
            im = ImageOps.fit(im, size, Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()


def write_text(path: Any, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_bytes(path: Any, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
