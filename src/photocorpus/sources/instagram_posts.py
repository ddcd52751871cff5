"""One Instagram post as photo records: the adapter shared by the harvest and the folder import.

:func:`post_media` turns one ``instaloader.Post`` into records: one per image (each image of a sidecar
is its own photo, sharing ``extra.post_id``), and the ids of the videos it skips. It reads the post's
raw node, never a property that would cost a request, except the owner's username when the listing
lacks it and ``owner_lookup`` is on. The harvest (:mod:`photocorpus.sources.instagram`) and the import
of instaloader/InstaLooter folders (:mod:`photocorpus.sources.instaloader_folder`) both use it, so a
harvested photo and an imported one are the same catalog row (source ``instagram``, source id = the
media id, as InstaCities1M names its files).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from instaloader import (
    BadResponseException,
    Post,
    PostChangedException,
    QueryReturnedNotFoundException,
    get_json_structure,
)

from photocorpus.caption_text import caption_hashtags
from photocorpus.records import ImageURL, PhotoRecord, utc_iso

log = logging.getLogger("photocorpus.sources.instagram")

SOURCE = "instagram"


@dataclass(frozen=True, slots=True)
class SkippedVideo:
    """A video the adapter did not turn into a photo."""

    source_id: str
    sidecar_index: int | None = None  # 1-based place in a sidecar (instaloader's ``_N`` file suffix)


@dataclass(slots=True)
class PostMedia:
    """One post as photos: a record per image (sidecar children included) and the videos skipped."""

    post_id: str
    shortcode: str
    records: list[PhotoRecord]
    videos: list[SkippedVideo]


def post_id_of(post: Post) -> str:
    """The post's media id as text (never a request)."""
    try:
        return str(post.mediaid)
    except (KeyError, TypeError, ValueError):
        return str(Post.shortcode_to_mediaid(post.shortcode))


def _count(node: dict[str, Any], *paths: tuple[str, ...]) -> int | None:
    for path in paths:
        value: Any = node
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _http_url(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _image_urls(node: dict[str, Any], iphone: dict[str, Any]) -> list[ImageURL]:
    """Every image URL a node offers, with its size: ``display`` (what instaloader downloads) plus the
    listed resolutions keyed ``<w>x<h>``. Only http(s) URLs are kept."""
    dims = _dict(node.get("dimensions"))
    iphone = _dict(iphone)
    urls: dict[str, ImageURL] = {}
    display = _http_url(node.get("display_url") or node.get("display_src"))
    if display:
        width = _int_or_none(dims.get("width") or iphone.get("original_width"))
        height = _int_or_none(dims.get("height") or iphone.get("original_height"))
        urls["display"] = ImageURL("display", display, width, height)
    candidates: list[tuple[Any, Any, Any]] = [
        (r.get("src"), r.get("config_width"), r.get("config_height"))
        for r in node.get("display_resources") or []
        if isinstance(r, dict)
    ]
    versions = _dict(iphone.get("image_versions2")).get("candidates") or []
    candidates += [(c.get("url"), c.get("width"), c.get("height")) for c in versions if isinstance(c, dict)]
    for src, width, height in candidates:
        url, w, h = _http_url(src), _int_or_none(width), _int_or_none(height)
        if url and w and h and url != display:
            urls.setdefault(f"{w}x{h}", ImageURL(f"{w}x{h}", url, w, h))
    return list(urls.values())


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _typename(node: dict[str, Any]) -> str:
    name = node.get("__typename")
    if isinstance(name, str) and name:
        return name
    if node.get("edge_sidecar_to_children") or _dict(node.get("iphone_struct")).get("carousel_media"):
        return "GraphSidecar"
    return "GraphVideo" if node.get("is_video") else "GraphImage"


def _owner(post: Post, node: dict[str, Any], owner_lookup: bool) -> tuple[str | None, str | None, bool]:
    """(username, owner id, lookup_failed). A lookup costs one request; 'not found' style failures only
    leave the username empty, while rate limits and the like propagate and stop the harvest."""
    owner = _dict(node.get("owner"))
    user = _dict(_dict(node.get("iphone_struct")).get("user"))
    owner_id = owner.get("id") or owner.get("pk") or user.get("pk") or user.get("id")
    username = owner.get("username") or user.get("username")
    failed = False
    if not username and owner_lookup:
        try:
            username = post.owner_username
            owner_id = owner_id or post.owner_id  # known without a request once the owner is fetched
        except (QueryReturnedNotFoundException, BadResponseException, PostChangedException, KeyError) as exc:
            log.info("owner of post %s not found: %s", post.shortcode, exc)
            failed = True
    return (str(username).lower() if username else None), (str(owner_id) if owner_id else None), failed


def post_media(post: Post, label: str, *, owner_lookup: bool = False) -> PostMedia:
    """Turn one instaloader ``Post`` into photo records (see the module docstring).

    Costs no request unless ``owner_lookup`` is on and the node lacks the owner's username.
    """
    node: dict[str, Any] = get_json_structure(post)["node"]
    post_id = post_id_of(post)
    shortcode = post.shortcode
    typename = _typename(node)
    iphone = _dict(node.get("iphone_struct"))
    caption = post.caption
    try:
        taken_at = utc_iso(post.date_utc)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        taken_at = None
    location = _dict(node.get("location"))
    common: dict[str, Any] = {"post_id": post_id, "shortcode": shortcode, "typename": typename}
    # Newer listings, iPhone structs, and the 2017 nodes InstaLooter dumped ("likes": {"count": n}).
    likes = _count(
        node,
        ("edge_media_preview_like", "count"),
        ("edge_liked_by", "count"),
        ("like_count",),
        ("likes", "count"),
    )
    comments = _count(
        node,
        ("edge_media_to_comment", "count"),
        ("edge_media_to_parent_comment", "count"),
        ("comments",),
        ("comment_count",),
        ("comments", "count"),
    )
    if likes is not None:
        common["likes"] = likes
    if comments is not None:
        common["comments"] = comments
    if location:
        common["location"] = {k: location[k] for k in ("id", "name", "slug") if location.get(k) is not None}
    title = node.get("title") if isinstance(node.get("title"), str) else None
    page_url = f"https://www.instagram.com/p/{shortcode}/"
    hashtags = caption_hashtags(caption)
    lat = _float_or_none(location.get("lat"))
    lon = _float_or_none(location.get("lng", location.get("lon")))

    if typename == "GraphVideo" or (typename != "GraphSidecar" and node.get("is_video")):
        return PostMedia(post_id, shortcode, [], [SkippedVideo(post_id)])

    username, owner_id, lookup_failed = _owner(post, node, owner_lookup)
    if lookup_failed:
        common["owner_lookup_failed"] = True

    def record(source_id: str, media: dict[str, Any], media_iphone: dict[str, Any], **extra: Any):
        accessibility = media.get("accessibility_caption")
        fields = dict(common, **extra)
        if accessibility:
            fields["accessibility_caption"] = accessibility
        index = extra.get("sidecar_index")
        return PhotoRecord(
            source=SOURCE,
            source_id=source_id,
            labels=[label],
            title=title,
            caption=caption,
            hashtags=hashtags,
            owner=username,
            owner_id=owner_id,
            lat=lat,
            lon=lon,
            taken_at=taken_at,
            page_url=page_url + (f"?img_index={index}" if index else ""),
            urls=_image_urls(media, media_iphone),
            extra=fields,
        )

    if typename != "GraphSidecar":
        return PostMedia(post_id, shortcode, [record(post_id, node, iphone)], [])

    edges = _dict(node.get("edge_sidecar_to_children")).get("edges") or []
    carousel = iphone.get("carousel_media") or []
    records: list[PhotoRecord] = []
    videos: list[SkippedVideo] = []
    for index, edge in enumerate(edges, start=1):
        child = edge.get("node") if isinstance(edge, dict) else None
        if not isinstance(child, dict):
            continue
        child_iphone = _dict(carousel[index - 1]) if index <= len(carousel) else {}
        child_id = child.get("id") or child_iphone.get("pk") or f"{post_id}_{index}"
        if child.get("is_video"):
            videos.append(SkippedVideo(str(child_id), index))
            continue
        extra = {"sidecar_index": index, "sidecar_count": len(edges)}
        records.append(record(str(child_id), child, child_iphone, **extra))
    return PostMedia(post_id, shortcode, records, videos)
