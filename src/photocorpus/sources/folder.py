"""Local folders and dataset exports as a photo source.

Recognised layouts (checked in this order):

* ``instacities``: InstaCities1M / InstaNY100K, ``img*/[...]/<city>/<id>.jpg`` with captions at the
  same relative place under ``captions*/`` as ``<id>.txt``. Label = city, source = ``instagram``.
* ``instaloader`` / ``instalooter``: folders written by those Instagram tools, recognised by their
  metadata files; see :mod:`photocorpus.sources.instaloader_folder`. Source = ``instagram``.
* ``mirflickr``: MIRFLICKR-25K's flat ``im<N>.jpg`` or MIRFLICKR-1M's ``images/<N // 10000>/<N>.jpg``,
  with the tags, EXIF, licence and s16a JSON files each distribution has, and ``<name>.txt`` /
  ``<name>.json`` sidecars as in a plain folder; see :mod:`photocorpus.sources.mirflickr_folder`.
  Source = ``mirflickr``, source id = ``N``.
* ``plain``: any folder tree of images with optional sidecars ``<name>.txt`` (the caption) and
  ``<name>.json`` (metadata). Label = parent folder name unless ``--label`` is given; source id = the
  file's path relative to the import root, without extension.

Listing happens in the driver and yields lightweight :class:`LocalCandidate` values in a sorted,
deterministic order; reading sidecars and images happens in workers (:func:`read_candidate`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photocorpus.caption_text import extract_hashtags
from photocorpus.errors import ImportSourceError
from photocorpus.exif import fields_from_tags
from photocorpus.records import PhotoRecord, utc_iso
from photocorpus.s16a import S16aExtras, geo_from, parse_s16a
from photocorpus.sources.local_candidates import (
    MAX_SIDECAR_BYTES,
    LocalCandidate,
    is_image_name,
)
from photocorpus.sources.mirflickr_meta import LicenceFile, parse_exif_text, parse_licence_text
from photocorpus.untrusted_json import loads_untrusted

LAYOUTS = ("instacities", "instaloader", "instalooter", "mirflickr", "plain")


def detect_layout(root: Path) -> str:
    """Name the layout of ``root`` (see the module docstring)."""
    if not root.is_dir():
        raise ImportSourceError(f"{root} is not a folder; pass the folder that holds the photos")
    subdirs = [p for p in root.iterdir() if p.is_dir()]
    if any(p.name.lower().startswith("img") for p in subdirs) and any(
        p.name.lower().startswith("captions") for p in subdirs
    ):
        return "instacities"
    from photocorpus.sources.instaloader_folder import detect_instagram_export  # it imports this module

    export = detect_instagram_export(root)
    if export:
        return export
    from photocorpus.sources.mirflickr_folder import chunked_images_dir, is_flat_mirflickr  # imports us

    if is_flat_mirflickr(root) or chunked_images_dir(root) is not None:
        return "mirflickr"
    return "plain"


def iter_candidates(
    root: Path, layout: str, label: str | None = None, *, follow_symlinks: bool = False
) -> Iterator[LocalCandidate]:
    """List the images of ``root`` in a stable order (sorted paths).

    ``follow_symlinks`` matters where metadata is read while listing (the instaloader and InstaLooter
    JSON): without it, a JSON file whose real path leaves ``root`` is not read.
    """
    root = root.absolute()
    if layout == "instacities":
        yield from _iter_instacities(root, label)
    elif layout in ("instaloader", "instalooter"):
        from photocorpus.sources.instaloader_folder import iter_instagram_export

        yield from iter_instagram_export(root, layout, label, follow_symlinks=follow_symlinks)
    elif layout == "mirflickr":
        from photocorpus.sources.mirflickr_folder import iter_mirflickr

        yield from iter_mirflickr(root, label)
    elif layout == "plain":
        yield from _iter_plain(root, label)
    else:
        raise ImportSourceError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def _walk_sorted(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """os.walk with sorted folders and files, skipping hidden folders, following no symlinked folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), sorted(filenames)


def _iter_instacities(root: Path, label: str | None) -> Iterator[LocalCandidate]:
    img_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("img"))
    caption_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("captions"))
    for img_dir in img_dirs:
        # img_resized <-> captions_resized; a lone captions folder serves every image folder.
        suffix = img_dir.name[3:]
        match = [c for c in caption_dirs if c.name[len("captions") :] == suffix] or caption_dirs[:1]
        cap_dir = match[0] if match else None
        for dirpath, filenames in _walk_sorted(img_dir):
            rel_dir = dirpath.relative_to(img_dir)
            for name in filenames:
                if not is_image_name(name):
                    continue
                stem = os.path.splitext(name)[0]
                caption = cap_dir / rel_dir / f"{stem}.txt" if cap_dir else None
                yield LocalCandidate(
                    path=str(dirpath / name),
                    source="instagram",
                    source_id=stem,
                    label=label or (dirpath.name if dirpath != img_dir else img_dir.name),
                    caption_path=str(caption) if caption is not None and caption.is_file() else None,
                )


def _iter_plain(root: Path, label: str | None) -> Iterator[LocalCandidate]:
    for dirpath, filenames in _walk_sorted(root):
        present = set(filenames)
        seen_stems: set[str] = set()
        for name in filenames:
            if not is_image_name(name):
                continue
            stem = os.path.splitext(name)[0]
            rel = (dirpath / stem).relative_to(root).as_posix()
            # Two images with one stem (a.jpg, a.png) keep apart by extension for the later one.
            source_id = rel if stem not in seen_stems else (dirpath / name).relative_to(root).as_posix()
            seen_stems.add(stem)
            yield LocalCandidate(
                path=str(dirpath / name),
                source="folder",
                source_id=source_id,
                label=label or dirpath.name or "unlabelled",
                caption_path=str(dirpath / f"{stem}.txt") if f"{stem}.txt" in present else None,
                json_path=str(dirpath / f"{stem}.json") if f"{stem}.json" in present else None,
            )


# ---------------------------------------------------------------------------------------------- records
def _read_text(path: str | None) -> str | None:
    if path is None:
        return None
    with open(path, "rb") as fh:
        data = fh.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise ValueError(f"sidecar {os.path.basename(path)} is larger than {MAX_SIDECAR_BYTES} bytes")
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n").strip("\ufeff").strip()


def _first(meta: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = meta.get(key)
        if value not in (None, "", []):
            return value
    return None


def _as_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t for t in re.split(r"[\s,]+", value) if t]
    if isinstance(value, list):
        return [str(t).strip() for t in value if str(t).strip()]
    return []


def _as_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(slots=True)
class CandidateRead:
    """What the files of one candidate say: its record, plus what belongs in other catalog tables."""

    record: PhotoRecord
    warnings: list[str]
    dataset_exif: dict[str, Any] = field(default_factory=dict)  # EXIF_COLUMNS from a dataset's EXIF file
    s16a: S16aExtras | None = None  # the enrichment kinds of an s16a JSON file, if it had any


def build_record(cand: LocalCandidate) -> tuple[PhotoRecord, list[str]]:
    """Read a candidate's sidecars into a record. Returns the record and sidecar warnings."""
    read = read_candidate(cand)
    return read.record, read.warnings


def read_candidate(cand: LocalCandidate) -> CandidateRead:
    """Read a candidate's sidecars and metadata files.

    A broken sidecar never rejects the photo: the photo is still worth having, and the warning is kept
    in the record's ``extra`` so the user can see what was ignored.
    """
    if cand.record is not None:
        return CandidateRead(cand.record, [])
    warnings: list[str] = list(cand.sidecar_warnings)
    meta: dict[str, Any] = {}
    caption: str | None = None
    tags: list[str] = []
    try:
        caption = _read_text(cand.caption_path)
    except (OSError, ValueError) as exc:
        warnings.append(f"caption: {exc}")
    if cand.json_path:
        try:
            loaded = loads_untrusted(_read_text(cand.json_path) or "{}", max_bytes=MAX_SIDECAR_BYTES)
            if isinstance(loaded, dict):
                meta = loaded
            else:
                warnings.append("json sidecar is not an object")
        except (OSError, ValueError) as exc:
            warnings.append(f"json sidecar: {exc}"[:300])
    if cand.tags_path:
        try:
            tags = [t for t in (_read_text(cand.tags_path) or "").splitlines() if t.strip()]
        except (OSError, ValueError) as exc:
            warnings.append(f"tags: {exc}")
    dataset_exif: dict[str, Any] = {}
    if cand.exif_path:
        try:
            dataset_exif = fields_from_tags(parse_exif_text(_read_text(cand.exif_path) or ""))
        except (OSError, ValueError) as exc:
            warnings.append(f"exif: {exc}")
    licence = LicenceFile()
    if cand.license_path:
        try:
            licence = parse_licence_text(_read_text(cand.license_path) or "")
        except (OSError, ValueError) as exc:
            warnings.append(f"license: {exc}")
    s16a, s16a_keys = parse_s16a(meta)
    geo_lat, geo_lon, geo_accuracy = geo_from(meta)

    caption = caption or _as_text(_first(meta, "caption", "description", "text"))
    tags = tags or _as_tags(_first(meta, "tags"))
    hashtags = [h.lstrip("#").casefold() for h in _as_tags(_first(meta, "hashtags"))] or extract_hashtags(
        caption
    )
    extra: dict[str, Any] = {"file": os.path.basename(cand.path)}
    if warnings:
        extra["sidecar_warnings"] = warnings
    known = {
        "title", "caption", "description", "text", "tags", "hashtags", "owner", "username", "owner_name",
        "owner_id", "lat", "latitude", "lon", "lng", "longitude", "accuracy", "geo_accuracy", "license",
        "licence", "taken_at", "date_taken", "datetaken", "uploaded_at", "date_upload", "dateupload",
        "url", "page_url", *s16a_keys,
    }  # fmt: skip
    if isinstance(meta.get("geo_information"), dict):  # s16a-shaped: read (or dropped if out of range)
        known.add("geo_information")
    leftovers = {k: v for k, v in meta.items() if k not in known}
    if leftovers:
        extra["metadata"] = leftovers
    record = PhotoRecord(
        source=cand.source,
        source_id=cand.source_id,
        labels=[cand.label],
        title=_as_text(_first(meta, "title")) or licence.title,
        caption=caption,
        tags=tags,
        hashtags=hashtags,
        owner=_as_text(_first(meta, "owner", "username", "owner_name")) or licence.owner,
        owner_id=_as_text(_first(meta, "owner_id")),
        lat=_as_float(_first(meta, "lat", "latitude")) if geo_lat is None else geo_lat,
        lon=_as_float(_first(meta, "lon", "lng", "longitude")) if geo_lon is None else geo_lon,
        geo_accuracy=_as_int(_first(meta, "accuracy", "geo_accuracy")) if geo_lat is None else geo_accuracy,
        license=_as_text(_first(meta, "license", "licence")) or licence.license,
        taken_at=utc_iso(_first(meta, "taken_at", "date_taken", "datetaken")),
        uploaded_at=utc_iso(_first(meta, "uploaded_at", "date_upload", "dateupload")),
        page_url=_as_text(_first(meta, "page_url", "url")) or licence.page_url,
        extra=extra,
    )
    return CandidateRead(record, warnings, dataset_exif, s16a if s16a_keys else None)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
