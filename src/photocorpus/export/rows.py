"""What every export reads: one joined, decoded row per photo, in catalog-id order.

Exports only read the catalog; they never change it. Untrusted text (captions, titles, ids, labels)
never chooses a path: file and folder names come from :func:`photocorpus.layout.safe_component`, and
a name that two photos would share gets the catalog id appended.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from photocorpus.corpus import Corpus
from photocorpus.errors import PhotocorpusError
from photocorpus.layout import safe_component
from photocorpus.storage import ImageLocation, open_image_bytes

SPLITS = ("train", "val", "test")
JPEG_QUALITY = 90


class ExportError(PhotocorpusError):
    """An export was asked for something it cannot do (unknown format or split, bad size)."""


@dataclass(slots=True)
class ExportPhoto:
    """One photo as exports see it."""

    photo_id: int
    source: str
    source_id: str
    label: str
    labels: list[str]
    title: str | None
    caption_raw: str | None
    caption: str  # the curated caption (title + description + hashtags, cleaned)
    hashtags: list[str]
    tags: list[str]
    owner: str | None
    owner_id: str | None
    license: str | None
    page_url: str | None
    taken_at: str | None
    uploaded_at: str | None
    lat: float | None
    lon: float | None
    path: str | None  # relative to the corpus
    width: int | None
    height: int | None
    bytes: int | None
    sha256: str | None
    format: str | None
    split: str | None
    duplicate_of: str | None  # source_id of the group's representative
    dup_group: int | None
    bot: bool
    bot_reason: str | None
    quality_flags: list[str] = field(default_factory=list)
    quality_scores: dict[str, float] = field(default_factory=dict)
    language: str | None = None
    exclusion: str | None = None
    phash: str | None = None  # 16 hex digits
    image_url: str | None = None  # the http(s) URL the stored image was downloaded from

    def provenance_url(self) -> str:
        """Where the photo came from: its page, else its image URL, else ``source:id``."""
        return self.page_url or self.image_url or f"{self.source}:{self.source_id}"

    def metadata(self) -> dict[str, Any]:
        """Everything but the file path, as JSON-ready values."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}


def parse_splits(values: Iterable[str] | None) -> set[str] | None:
    """``--split`` values (repeatable, comma-separated; ``all`` means no filter) as a set or ``None``."""
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
        raise ExportError(f"--size must look like 300x300, not {value!r}") from None
    if not (1 <= w <= 20000 and 1 <= h <= 20000):
        raise ExportError(f"--size {value} is out of range (1..20000 per side)")
    return w, h


def iter_photos(
    corpus: Corpus, *, splits: set[str] | None = None, in_split_only: bool = False, with_file: bool = False
) -> Iterator[ExportPhoto]:
    """Photos in catalog order, filtered by split (and to those with a split or a file if asked)."""
    query = """
        SELECT p.*, f.path, f.width AS f_width, f.height AS f_height, f.bytes AS f_bytes, f.sha256,
               f.format, c.split, c.dup_group, c.duplicate_of, rep.source_id AS rep_source_id, c.bot,
               c.bot_reason, c.quality_flags, c.quality_scores, c.caption_clean, c.language, c.exclusion,
               c.phash, f.origin
        FROM photos p
        LEFT JOIN files f ON f.photo_id = p.id
        LEFT JOIN curation c ON c.photo_id = p.id
        LEFT JOIN photos rep ON rep.id = c.duplicate_of
        ORDER BY p.id"""
    labels: dict[int, list[str]] = {}
    for pid, label in corpus.conn.execute(
        "SELECT photo_id, label FROM photo_labels ORDER BY photo_id, label"
    ):
        labels.setdefault(int(pid), []).append(label)
    for r in corpus.conn.execute(query):
        split = r["split"]
        if (in_split_only or splits is not None) and split is None:
            continue
        if splits is not None and split not in splits:
            continue
        if with_file and r["path"] is None:
            continue
        yield ExportPhoto(
            photo_id=int(r["id"]),
            source=r["source"],
            source_id=r["source_id"],
            label=r["primary_label"],
            labels=labels.get(int(r["id"]), [r["primary_label"]]),
            title=r["title"],
            caption_raw=r["caption"],
            caption=r["caption_clean"] if r["caption_clean"] is not None else _fallback_caption(r),
            hashtags=json.loads(r["hashtags"] or "[]"),
            tags=json.loads(r["tags"] or "[]"),
            owner=r["owner"],
            owner_id=r["owner_id"],
            license=r["license"],
            page_url=r["page_url"],
            taken_at=r["taken_at"],
            uploaded_at=r["uploaded_at"],
            lat=r["lat"],
            lon=r["lon"],
            path=r["path"],
            width=r["f_width"],
            height=r["f_height"],
            bytes=r["f_bytes"],
            sha256=r["sha256"],
            format=r["format"],
            split=split,
            duplicate_of=r["rep_source_id"],
            dup_group=r["dup_group"],
            bot=bool(r["bot"]),
            bot_reason=r["bot_reason"],
            quality_flags=json.loads(r["quality_flags"] or "[]"),
            quality_scores=json.loads(r["quality_scores"] or "{}"),
            language=r["language"],
            exclusion=r["exclusion"],
            phash=f"{int(r['phash']) & 0xFFFFFFFFFFFFFFFF:016x}" if r["phash"] is not None else None,
            # A local origin is a path on the importing machine: not provenance, and not for export.
            image_url=r["origin"] if str(r["origin"] or "").startswith(("http://", "https://")) else None,
        )


def _fallback_caption(row: Any) -> str:
    from photocorpus.curate.text import curated_caption

    return curated_caption(row["title"], row["caption"], json.loads(row["hashtags"] or "[]"))


class UniqueNames:
    """Safe file stems, unique within each folder: a clash gets ``-p<catalog id>`` appended."""

    def __init__(self) -> None:
        self._used: set[tuple[str, str]] = set()

    def stem(self, folder: str, photo: ExportPhoto) -> str:
        stem = safe_component(photo.source_id)
        if (folder, stem) in self._used:
            stem = safe_component(f"{photo.source_id}-p{photo.photo_id}")
        self._used.add((folder, stem))
        return stem


def image_jpeg(corpus: Corpus, photo: ExportPhoto, size: tuple[int, int] | None) -> bytes:
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
