"""What a folder listing hands the importer: one :class:`LocalCandidate` per image file.

Shared by every local layout (plain folders and InstaCities in :mod:`photocorpus.sources.folder`,
instaloader/InstaLooter in :mod:`photocorpus.sources.instaloader_folder`, MIRFLICKR in
:mod:`photocorpus.sources.mirflickr_folder`). It lives apart from ``folder.py``, which dispatches to
the other two, so that those can use it without importing their dispatcher back (an import cycle).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from photocorpus.records import PhotoRecord

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"})
MAX_SIDECAR_BYTES = 4 * 1024 * 1024  # a caption or metadata file larger than this is not a sidecar


@dataclass(frozen=True, slots=True)
class LocalCandidate:
    """One image file to import and what the listing already knows about it."""

    path: str  # absolute path of the image
    source: str
    source_id: str
    label: str
    caption_path: str | None = None
    json_path: str | None = None
    tags_path: str | None = None
    exif_path: str | None = None  # a dataset's EXIF text file (MIRFLICKR), not the image's own EXIF
    license_path: str | None = None
    # A record the listing already built from the layout's metadata (instaloader, InstaLooter).
    record: PhotoRecord | None = field(default=None, compare=False, hash=False)
    # Set for media the layout lists but never imports (e.g. "video"); counted, not stored.
    skip_reason: str | None = None
    # What the listing could not read of this image's metadata (an instaloader post JSON nested too
    # deep, say): kept with build_record's own warnings, so the photo says why its metadata is missing.
    sidecar_warnings: tuple[str, ...] = ()


def real_path_inside(real_path: str, real_root: str) -> bool:
    """Whether ``real_path`` (symlinks already resolved) lies inside the folder ``real_root``.

    The one rule for "a symlink that leaves the imported folder": the importer applies it to images
    and sidecars, the instaloader/InstaLooter listing to the JSON it reads.
    """
    return real_path.startswith(real_root.rstrip(os.sep) + os.sep)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")
