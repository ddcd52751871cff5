"""Thumbnails and full images, found by photo id only: the URL never names a path.

A thumbnail is made on first request with the explore report's own worker
(:func:`photocorpus.explore.thumbs.make_thumbnail`: JPEG draft decode, EXIF orientation, 160 px) into
the cache the report uses (``reports/.thumbs/160/``), keyed by the image's sha256, so a replaced image
never shows a stale thumbnail and the two tools never make one twice.

Each image carries an ETag made from the stored file's sha256 (the thumbnail is a pure function of
it and :data:`THUMB_PX`): a browser that asks again after its cache time sends ``If-None-Match`` and
gets an empty 304 instead of the bytes, decided from one catalog row without touching the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from photocorpus.corpus import Corpus
from photocorpus.corpus_files import open_image_bytes
from photocorpus.explore.thumbs import THUMB_PX, cached_thumbnail, make_thumbnail

MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True)
class StoredImage:
    """An image to send: a local file, or bytes (an image on an object store)."""

    media_type: str
    path: Path | None = None
    data: bytes | None = None
    etag: str | None = None  # quoted, as the header carries it

    def matches(self, if_none_match: str | None) -> bool:
        """Whether a request's ``If-None-Match`` names this image (so a 304 answers it)."""
        if not if_none_match or self.etag is None:
            return False
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or self.etag in tags


def etag_of(sha256: str | None, variant: str) -> str | None:
    return f'"{sha256}-{variant}"' if sha256 else None


def thumbnail(corpus: Corpus, photo_id: int) -> StoredImage | None:
    """The photo's cached thumbnail, made now if missing; None when it has no readable image."""
    row = corpus.conn.execute("SELECT path, sha256 FROM files WHERE photo_id = ?", (photo_id,)).fetchone()
    if row is None:
        return None
    dest = cached_thumbnail(corpus, photo_id, row["sha256"], THUMB_PX)
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        error = make_thumbnail((corpus.image_location(row["path"]), str(dest), THUMB_PX))
        if error is not None:
            return None
    return StoredImage("image/jpeg", path=dest, etag=etag_of(row["sha256"], f"thumb{THUMB_PX}"))


def full_image(corpus: Corpus, photo_id: int) -> StoredImage | None:
    """The stored image itself (checked to lie inside the corpus or under images/ on its store)."""
    row = corpus.conn.execute(
        "SELECT path, format, sha256 FROM files WHERE photo_id = ?", (photo_id,)
    ).fetchone()
    if row is None:
        return None
    media_type = MEDIA_TYPES.get(str(row["format"]).upper(), "application/octet-stream")
    etag = etag_of(row["sha256"], "full")
    location = corpus.image_location(row["path"])
    if isinstance(location, str):
        path = Path(location)
        return StoredImage(media_type, path=path, etag=etag) if path.is_file() else None
    return StoredImage(media_type, data=open_image_bytes(location), etag=etag)
