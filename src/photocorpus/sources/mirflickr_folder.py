"""MIRFLICKR folders: the 25K's flat ``im<N>.jpg`` and the 1M's ``images/<N // 10000>/<N>.jpg``.

Both import as source ``mirflickr`` with the photo number ``N`` as source id, so the 25K and the 1M
number their photos the same way, and a ``.dat`` feature file ``<N // 10000>/<N>.dat`` or a concept
list naming ``im<N>.jpg`` finds its photo.

Metadata is read where each distribution keeps it (the first folder found wins; ``k = N // 10000``):

* tags, one per line: 25K ``meta/tags/tags<N>.txt`` (else ``meta/tags_raw/``); 1M
  ``<base>/tags/<k>/<N>.txt`` or ``<base>/meta/tags/<k>/<N>.txt`` (else ``tags_raw``);
* EXIF: 25K ``meta/exif/exif<N>.txt`` (else ``meta/exif_raw/``); 1M ``<base>/[meta/]exif/<k>/<N>.txt``
  (else ``exif_raw``); parsed by :func:`photocorpus.sources.mirflickr_meta.parse_exif_text`;
* licence: 25K ``meta/license/license<N>.txt``; 1M ``<base>/[meta/]license/<k>/<N>.txt``;
* s16a JSON (1M only): ``<base>/metadata/<k>/<N>.json``, read as the s16a fields
  (:mod:`photocorpus.s16a`);

where ``<base>`` is the folder that holds ``images/``; the 25K's ``meta/`` may sit in the image folder
or beside it. A ``<name>.txt`` next to an image is its caption and a ``<name>.json`` its metadata (the
s16a file wins when both exist), as in a plain folder: someone who added captions to MIRFLICKR photos
keeps both the captions and the MIRFLICKR numbering.

Each kind's folder is listed once per chunk, not probed once per photo, because the 1M has a million
photos and five kinds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from photocorpus.mirflickr_chunks import MIRFLICKR_SOURCE, chunk_of
from photocorpus.sources.local_candidates import LocalCandidate, is_image_name

__all__ = ["chunked_images_dir", "is_flat_mirflickr", "iter_mirflickr"]

FLAT_NAME = re.compile(r"^im(\d+)\.jpe?g$", re.IGNORECASE)
CHUNKED_NAME = re.compile(r"^(\d+)\.jpe?g$", re.IGNORECASE)
_CHUNK_DIR = re.compile(r"^\d+$")
SAMPLED_CHUNKS = 3  # detection reads this many chunk folders: a layout is uniform, so a few decide it
SKIP_NOT_NUMBERED = "not_mirflickr_numbered"  # an image in a MIRFLICKR-1M chunk folder without a number name
# kind -> (folders to try, best first; file name prefix in the 25K)
_KINDS = {
    "tags": (("tags", "tags_raw"), "tags"),
    "exif": (("exif", "exif_raw"), "exif"),
    "license": (("license",), "license"),
}


def is_flat_mirflickr(root: Path) -> bool:
    """Every image at the top of ``root`` is named ``im<N>.jpg`` (MIRFLICKR-25K)."""
    top_images = [name for name in os.listdir(root) if is_image_name(name)]
    return bool(top_images) and all(FLAT_NAME.match(n) for n in top_images)


def _numeric_subdirs(folder: Path) -> list[Path] | None:
    """The chunk folders of ``folder``, numerically sorted; None when anything else is there."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    dirs: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not _CHUNK_DIR.match(entry.name):
                return None
            dirs.append(Path(entry.path))
        elif is_image_name(entry.name):
            return None  # images beside the chunk folders: not the 1M layout
    return sorted(dirs, key=lambda d: int(d.name))


def _looks_chunked(folder: Path) -> bool:
    """``folder`` holds only ``<k>/`` chunk folders, and the images in the first few are ``<N>.jpg``
    with ``N // 10000 == k``, as MIRFLICKR-1M's. The chunk rule is what tells a 1M tree from a plain
    folder of numbered albums (``2019/1.jpg``)."""
    chunks = _numeric_subdirs(folder)
    if not chunks:
        return False
    seen_image = False
    for chunk in chunks[:SAMPLED_CHUNKS]:
        for name in os.listdir(chunk):
            if not is_image_name(name):
                continue
            match = CHUNKED_NAME.match(name)
            if not match or chunk_of(int(match.group(1))) != int(chunk.name):
                return False
            seen_image = True
    return seen_image


def chunked_images_dir(root: Path) -> Path | None:
    """The ``images/`` folder of a MIRFLICKR-1M tree given its root, or ``root`` if it is that folder."""
    if (root / "images").is_dir() and _looks_chunked(root / "images"):
        return root / "images"
    if _looks_chunked(root):
        return root
    return None


def iter_mirflickr(root: Path, label: str | None) -> Iterator[LocalCandidate]:
    """List a MIRFLICKR folder (either distribution) in photo-number order."""
    images = chunked_images_dir(root) if not is_flat_mirflickr(root) else None
    if images is not None:
        yield from _iter_chunked(images, label)
    else:
        yield from _iter_flat(root, label)


def _first_dir(candidates: list[Path]) -> Path | None:
    return next((d for d in candidates if d.is_dir()), None)


def _listing(folder: Path | None) -> set[str]:
    if folder is None:
        return set()
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def _iter_flat(root: Path, label: str | None) -> Iterator[LocalCandidate]:
    bases = [root / "meta", root.parent / "meta"]
    kind_files: dict[str, tuple[Path, set[str], str]] = {}
    for kind, (folders, prefix) in _KINDS.items():
        for folder in folders:
            found = _first_dir([b / folder for b in bases])
            if found is not None:
                kind_files[kind] = (found, _listing(found), prefix)
                break
    present = set(os.listdir(root))
    names = [n for n in present if FLAT_NAME.match(n)]
    for name in sorted(names, key=lambda n: (int(FLAT_NAME.match(n).group(1)), n)):  # type: ignore[union-attr]
        digits = FLAT_NAME.match(name).group(1)  # type: ignore[union-attr]
        stem = os.path.splitext(name)[0]

        def meta(kind: str, digits: str = digits) -> str | None:
            if kind not in kind_files:
                return None
            folder, listing, prefix = kind_files[kind]
            file = f"{prefix}{digits}.txt"
            return str(folder / file) if file in listing else None

        yield LocalCandidate(
            path=str(root / name),
            source=MIRFLICKR_SOURCE,
            source_id=str(int(digits)),
            label=label or MIRFLICKR_SOURCE,
            caption_path=str(root / f"{stem}.txt") if f"{stem}.txt" in present else None,
            json_path=str(root / f"{stem}.json") if f"{stem}.json" in present else None,
            tags_path=meta("tags"),
            exif_path=meta("exif"),
            license_path=meta("license"),
        )


def _iter_chunked(images: Path, label: str | None) -> Iterator[LocalCandidate]:
    base = images.parent
    kind_dirs: dict[str, Path] = {}
    for kind, (folders, _prefix) in _KINDS.items():
        for folder in folders:
            found = _first_dir([base / folder, base / "meta" / folder])
            if found is not None:
                kind_dirs[kind] = found
                break
    json_dir = _first_dir([base / "metadata"])
    listings: dict[tuple[str, int], set[str]] = {}

    def meta_file(kind: str, folder: Path | None, number: int, ext: str) -> str | None:
        if folder is None:
            return None
        chunk = chunk_of(number)
        key = (kind, chunk)
        if key not in listings:
            if len(listings) > 64:  # chunks come in order: the old listings are done with
                listings.clear()
            listings[key] = _listing(folder / str(chunk))
        name = f"{number}.{ext}"
        return str(folder / str(chunk) / name) if name in listings[key] else None

    for chunk_dir in _numeric_subdirs(images) or []:
        present = set(os.listdir(chunk_dir))
        entries = []
        for name in present:
            if not is_image_name(name):
                continue
            match = CHUNKED_NAME.match(name)
            entries.append((int(match.group(1)) if match else -1, name))
        for number, name in sorted(entries):
            path = chunk_dir / name
            if number < 0:
                yield LocalCandidate(
                    path=str(path),
                    source=MIRFLICKR_SOURCE,
                    source_id=path.relative_to(images).as_posix(),
                    label=label or MIRFLICKR_SOURCE,
                    skip_reason=SKIP_NOT_NUMBERED,
                )
                continue
            stem = os.path.splitext(name)[0]
            sidecar_json = str(chunk_dir / f"{stem}.json") if f"{stem}.json" in present else None
            yield LocalCandidate(
                path=str(path),
                source=MIRFLICKR_SOURCE,
                source_id=str(number),
                label=label or MIRFLICKR_SOURCE,
                caption_path=str(chunk_dir / f"{stem}.txt") if f"{stem}.txt" in present else None,
                json_path=meta_file("json", json_dir, number, "json") or sidecar_json,
                tags_path=meta_file("tags", kind_dirs.get("tags"), number, "txt"),
                exif_path=meta_file("exif", kind_dirs.get("exif"), number, "txt"),
                license_path=meta_file("license", kind_dirs.get("license"), number, "txt"),
            )
