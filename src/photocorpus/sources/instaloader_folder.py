"""instaloader and InstaLooter output folders as an import source (``photocorpus import DIR``).

**instaloader** writes, per post, in one folder per target (``#london/``, ``username/``):

* ``{date_utc}_UTC.jpg`` for an image post, ``{date_utc}_UTC_{n}.jpg`` for the n-th image of a sidecar
  (a video's ``.jpg`` is its thumbnail, next to the ``.mp4``);
* ``{date_utc}_UTC.txt``, the caption (absent when the post has none);
* ``{date_utc}_UTC.json.xz``, xz-compressed ``{"node": …, "instaloader": {…}}``, or ``.json`` with
  ``--no-compress-json``; besides these, profile/hashtag metadata, profile pictures and resume files.

Each post JSON is loaded with instaloader's own ``load_structure`` into a real ``Post`` and turned into
records by the same adapter as the harvest (:func:`photocorpus.sources.instagram.post_media`), so an
imported photo and a harvested one are the same catalog row. The image of record ``n`` is the file with
suffix ``_n``; videos become *skipped* candidates (counted, never imported). Images that no post JSON
claims (``--no-metadata-json`` downloads) import like a plain folder; profile pictures are left out.

**InstaLooter** names files after the media id: ``<id>.jpg`` (``<id>.mp4`` for videos) and, with
``--dump-json``, ``<id>.json``, the raw media node. Sidecar images are named after their own ids and
have no JSON of their own (InstaLooter dumps the post, without its children, under the post's id), so
they import with their id only.

Metadata is read in the listing (the driver): we need the media ids before the resume check, and one
small JSON costs ~0.15 ms to read, so 100,000 posts add ~15 s. Images are still read in the workers.
"""

from __future__ import annotations

import logging
import lzma
import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from photocorpus.records import PhotoRecord
from photocorpus.sources.local_candidates import (
    MAX_SIDECAR_BYTES,
    LocalCandidate,
    is_image_name,
    real_path_inside,
)
from photocorpus.untrusted_json import loads_untrusted

log = logging.getLogger(__name__)

LAYOUTS = ("instaloader", "instalooter")
SOURCE = "instagram"
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov"})
DETECT_MAX_FOLDERS = 64  # the root and at most this many folders right below it are looked at
DETECT_MAX_JSON = 16  # JSON files opened per folder while detecting

_MEDIA_ID = re.compile(r"^\d{5,25}$")  # InstaLooter's default "{id}" file names
_SIDECAR_SUFFIX = re.compile(r"^(?P<stem>.+)_(?P<index>[1-9]\d{0,2})$")
_TITLE_PIC = re.compile(r"_UTC_(profile_pic|cover)$")  # instaloader's title pictures, not posts


# ---------------------------------------------------------------------------------------------- reading
def _split_json_name(name: str) -> str | None:
    """The stem of a ``.json.xz`` or ``.json`` file name, else ``None``."""
    for ext in (".json.xz", ".json"):
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def read_json_file(path: str | os.PathLike[str], inside: str | None = None) -> Any:
    """A ``.json`` or xz-compressed ``.json.xz`` file, at most MAX_SIDECAR_BYTES once decompressed and
    nested no deeper than :data:`~photocorpus.untrusted_json.MAX_DEPTH`: it came from outside.

    With ``inside`` (a real folder path), a file whose real path leaves that folder is not read: a
    post JSON symlinked to a private file would otherwise have its text stored as a caption (the same
    rule as ``import``'s for images and sidecars; ``--follow-symlinks`` lifts both).

    Raises ``ValueError`` (also for broken xz data, refused JSON and such a symlink) or ``OSError``.
    """
    if inside is not None and not real_path_inside(os.path.realpath(path), inside):
        raise ValueError("a symlink outside the imported folder, not read (--follow-symlinks reads it)")
    opener = lzma.open if str(path).endswith(".xz") else open
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            data = fh.read(MAX_SIDECAR_BYTES + 1)
    except (lzma.LZMAError, EOFError) as exc:
        raise ValueError(f"broken xz data: {exc}") from exc
    return loads_untrusted(data, max_bytes=MAX_SIDECAR_BYTES)


def _is_instaloader_structure(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("node"), dict)
        and isinstance(data.get("instaloader"), dict)
        and "node_type" in data["instaloader"]
    )


def _is_media_node(data: Any) -> bool:
    return isinstance(data, dict) and "id" in data and ("shortcode" in data or "code" in data)


def detect_instagram_export(root: Path) -> str | None:
    """``instaloader`` or ``instalooter`` when ``root`` or a folder right below it holds their metadata
    files (checked by content, not only by name), else ``None``."""
    try:
        subdirs = sorted(e.path for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return None
    for folder in [str(root), *subdirs[:DETECT_MAX_FOLDERS]]:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        opened = 0
        for name in names:
            stem = _split_json_name(name)
            if stem is None or opened >= DETECT_MAX_JSON:
                continue
            opened += 1
            try:
                data = read_json_file(os.path.join(folder, name))
            except (OSError, ValueError):
                continue
            if _is_instaloader_structure(data):
                return "instaloader"
            if name.endswith(".json") and _MEDIA_ID.match(stem) and _is_media_node(data):
                return "instalooter"
    return None


@lru_cache(maxsize=1)
def _offline_context() -> Any:
    """An instaloader context for wrapping saved nodes; the adapter never makes it send a request."""
    import instaloader

    return instaloader.InstaloaderContext(sleep=False, quiet=True)


def _label(dirpath: Path, root: Path, label: str | None) -> str:
    """``--label``, else the target folder's name without instaloader's ``#`` (``#london`` → london)."""
    if label:
        return label
    return dirpath.name.lstrip("#") or root.name.lstrip("#") or "instagram"


def iter_instagram_export(
    root: Path, layout: str, label: str | None = None, *, follow_symlinks: bool = False
) -> Iterator[LocalCandidate]:
    """List an instaloader or InstaLooter folder tree in a stable order (sorted folders and names).

    The metadata JSON is read here, in the driver; unless ``follow_symlinks``, a JSON file whose real
    path leaves ``root`` is not read (see :func:`read_json_file`).
    """
    root = root.absolute()
    inside = None if follow_symlinks else os.path.realpath(root)
    walk = _iter_instaloader_folder if layout == "instaloader" else _iter_instalooter_folder
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        yield from walk(root, folder, sorted(filenames), _label(folder, root, label), inside)


# ---------------------------------------------------------------------------------------------- instaloader
def _images_by_stem(filenames: list[str]) -> dict[str, str]:
    images: dict[str, str] = {}
    for name in filenames:
        if is_image_name(name):
            images.setdefault(os.path.splitext(name)[0], name)
    return images


def _load_posts(
    folder: Path, filenames: list[str], inside: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """{stem: instaloader Post} for the post JSONs of one folder (``.json.xz`` wins over ``.json``), and
    {stem: why} for those that could not be read, so their images can say why they lack metadata."""
    from instaloader import InstaloaderException, load_structure

    chosen: dict[str, str] = {}
    for name in filenames:
        stem = _split_json_name(name)
        if stem is not None and (stem not in chosen or name.endswith(".xz")):
            chosen[stem] = name
    posts: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    for stem, name in sorted(chosen.items()):
        try:
            data = read_json_file(folder / name, inside)
            if not _is_instaloader_structure(data) or data["instaloader"]["node_type"] != "Post":
                continue  # profile, hashtag, story item or resume file: not a post
            post = load_structure(_offline_context(), data)
            post.shortcode  # noqa: B018 - a node without one is unusable; fail here, not later
        except (OSError, ValueError, KeyError, TypeError, AssertionError, InstaloaderException) as exc:
            log.warning("ignoring %s: not a readable instaloader post (%s)", folder / name, exc)
            unreadable[stem] = f"post json {name}: {exc}"[:300]
            continue
        posts[stem] = post
    return posts, unreadable


def _iter_instaloader_folder(
    root: Path, folder: Path, filenames: list[str], label: str, inside: str | None
) -> Iterator[LocalCandidate]:
    from photocorpus.sources.instagram_posts import post_media

    images = _images_by_stem(filenames)
    present = set(filenames)
    claimed: set[str] = set()
    posts, unreadable = _load_posts(folder, filenames, inside)
    for stem, post in posts.items():
        try:
            media = post_media(post, label, owner_lookup=False)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("ignoring post %s in %s: %s", stem, folder, exc)
            continue
        for record in media.records:
            index = record.extra.get("sidecar_index")
            image_stem = f"{stem}_{index}" if index else stem
            name = images.get(image_stem)
            if name is None:
                continue  # not downloaded (e.g. instaloader --slide): nothing to import
            claimed.add(image_stem)
            record.extra["file"] = name
            yield LocalCandidate(str(folder / name), SOURCE, record.source_id, label, record=record)
        for video in media.videos:
            thumb_stem = f"{stem}_{video.sidecar_index}" if video.sidecar_index else stem
            claimed.add(thumb_stem)  # the .jpg next to a video is its thumbnail, not a photo
            name = images.get(thumb_stem) or next(
                (f"{thumb_stem}{ext}" for ext in VIDEO_EXTENSIONS if f"{thumb_stem}{ext}" in present), None
            )
            path = str(folder / (name or thumb_stem))
            yield LocalCandidate(path, SOURCE, video.source_id, label, skip_reason="video")
    for image_stem, name in sorted(images.items()):
        if image_stem in claimed or _TITLE_PIC.search(image_stem):
            continue
        # No metadata JSON claims it: import it as a plain folder would, caption from the .txt.
        sidecar = _SIDECAR_SUFFIX.match(image_stem)
        caption_stem = sidecar.group("stem") if sidecar and f"{image_stem}.txt" not in present else image_stem
        why = unreadable.get(image_stem) or (unreadable.get(sidecar.group("stem")) if sidecar else None)
        yield LocalCandidate(
            path=str(folder / name),
            source="folder",
            source_id=(folder / image_stem).relative_to(root).as_posix(),
            label=label,
            caption_path=str(folder / f"{caption_stem}.txt") if f"{caption_stem}.txt" in present else None,
            sidecar_warnings=(why,) if why else (),
        )


# ---------------------------------------------------------------------------------------------- InstaLooter
def _media_id_sort_key(stem: str) -> tuple[int, str]:
    return (len(stem), stem)


def _iter_instalooter_folder(
    root: Path, folder: Path, filenames: list[str], label: str, inside: str | None
) -> Iterator[LocalCandidate]:
    images = {s: n for s, n in _images_by_stem(filenames).items() if _MEDIA_ID.match(s)}
    videos = {
        os.path.splitext(n)[0]
        for n in filenames
        if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS and _MEDIA_ID.match(os.path.splitext(n)[0])
    }
    dumps = {n[:-5] for n in filenames if n.endswith(".json") and _MEDIA_ID.match(n[:-5])}
    for stem in sorted(images.keys() | videos | dumps, key=_media_id_sort_key):
        node, why = _load_instalooter_node(folder / f"{stem}.json", inside) if stem in dumps else (None, None)
        is_video = stem in videos or bool(node and node.get("is_video"))
        if is_video:
            path = str(folder / (images.get(stem) or f"{stem}.json"))
            yield LocalCandidate(path, SOURCE, stem, label, skip_reason="video")
            continue
        if stem not in images:
            continue  # a sidecar's dump (its images have their own ids) or a --dump-only file
        record = _instalooter_record(node, stem, label) if node else None
        if record is None:
            record = PhotoRecord(source=SOURCE, source_id=stem, labels=[label])
            if why:
                record.extra["sidecar_warnings"] = [why]
        record.extra["file"] = images[stem]
        yield LocalCandidate(str(folder / images[stem]), SOURCE, stem, label, record=record)


def _load_instalooter_node(path: Path, inside: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The media node dumped at ``path`` (``None`` when it is not one), and why it could not be read."""
    try:
        data = read_json_file(path, inside)
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None, f"json dump {path.name}: {exc}"[:300]
    return (data if _is_media_node(data) else None), None


def _instalooter_record(node: dict[str, Any], stem: str, label: str) -> PhotoRecord | None:
    """The record of ``<stem>.jpg`` from its dumped node, through the harvest's adapter."""
    from instaloader import InstaloaderException, Post

    from photocorpus.sources.instagram_posts import post_media

    try:
        media = post_media(Post(_offline_context(), node), label, owner_lookup=False)
    except (KeyError, TypeError, ValueError, AssertionError, AttributeError, InstaloaderException) as exc:
        log.warning("ignoring the JSON of %s: %s", stem, exc)
        return None
    return next((r for r in media.records if r.source_id == stem), None)
