"""Support for the Instagram tests (this module holds no tests).

* node builders: dicts shaped like the GraphQL nodes Instagram sends (and instaloader keeps);
* :class:`FakeInstagram`: Instagram's endpoints as instaloader 4.16 calls them, answered in memory at
  the HTTP transport (``requests``' ``HTTPAdapter.send``), so everything above it is instaloader's real
  code: ``get_json`` with its retries, the rate controller, ``Hashtag``, ``NodeIterator`` and ``Post``.
  Any request to an unknown URL fails the test, so nothing can reach the network;
* :func:`offline_loader`: the production ``open_instaloader`` on a real session file, with a rate
  controller that records the waits it decides instead of sleeping them.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import instaloader
import requests
from instaloader import Post

SESSION_SECRET = "SeCrEt-sessionid-4f1d9a77c2"  # must never show up anywhere photocorpus writes
CSRF_SECRET = "CsRf-token-90be1c33d8aa"
TEST_USER = "tester"
CDN = "https://scontent-lga3-1.cdninstagram.com/v/t51.2885-15/e35"
OE_FUTURE = format(int(datetime(2099, 1, 1, tzinfo=UTC).timestamp()), "X")


# ------------------------------------------------------------------------------------------ node builders
def shortcode(media_id: int | str) -> str:
    return Post.mediaid_to_shortcode(int(media_id))


def cdn_url(media_id: int | str, width: int = 1080) -> str:
    query = f"_nc_ht=scontent-lga3-1.cdninstagram.com&oh=ab12&oe={OE_FUTURE}"
    return f"{CDN}/p{width}x{width}/{media_id}_n.jpg?{query}"


def child_node(media_id: int | str, *, is_video: bool = False, accessibility: str | None = None) -> dict:
    node = {
        "__typename": "GraphVideo" if is_video else "GraphImage",
        "id": str(media_id),
        "shortcode": shortcode(media_id),
        "dimensions": {"height": 1350, "width": 1080},
        "display_url": cdn_url(media_id),
        "is_video": is_video,
    }
    if accessibility:
        node["accessibility_caption"] = accessibility
    if is_video:
        node["video_url"] = f"{CDN}/{media_id}.mp4?oe={OE_FUTURE}"
    return node


def post_node(
    media_id: int | str,
    *,
    taken_at: int,
    caption: str | None,
    owner_id: str = "1000",
    username: str | None = "alice",
    kind: str = "image",  # image | video | sidecar
    children: list[dict] | None = None,
    likes: int = 7,
    comments: int = 2,
    location: dict | None = None,
    accessibility: str | None = None,
) -> dict:
    """A post node as Instagram's GraphQL hashtag/profile listings send it."""
    owner: dict[str, Any] = {"id": owner_id}
    if username:
        owner["username"] = username
    node: dict[str, Any] = {
        "__typename": {"image": "GraphImage", "video": "GraphVideo", "sidecar": "GraphSidecar"}[kind],
        "id": str(media_id),
        "shortcode": shortcode(media_id),
        "comments_disabled": False,
        "dimensions": {"height": 1080, "width": 1080},
        "display_url": cdn_url(media_id),
        "display_resources": [
            {"src": cdn_url(media_id, w), "config_width": w, "config_height": w} for w in (640, 750, 1080)
        ],
        "edge_media_to_caption": {"edges": [{"node": {"text": caption}}] if caption is not None else []},
        "edge_media_to_comment": {"count": comments},
        "edge_liked_by": {"count": likes},
        "edge_media_preview_like": {"count": likes},
        "taken_at_timestamp": taken_at,
        "owner": owner,
        "is_video": kind == "video",
        "location": location,
    }
    if accessibility:
        node["accessibility_caption"] = accessibility
    if kind == "video":
        node["video_url"] = f"{CDN}/{media_id}.mp4?oe={OE_FUTURE}"
        node["video_view_count"] = 120
    if kind == "sidecar":
        node["edge_sidecar_to_children"] = {"edges": [{"node": c} for c in children or []]}
    return node


def expected_photo_ids(nodes: list[dict]) -> set[str]:
    """The photos a list of post nodes must become, worked out from the nodes alone."""
    out: set[str] = set()
    for node in nodes:
        if node["__typename"] == "GraphImage":
            out.add(node["id"])
        elif node["__typename"] == "GraphSidecar":
            out |= {
                e["node"]["id"]
                for e in node["edge_sidecar_to_children"]["edges"]
                if not e["node"]["is_video"]
            }
    return out


def expected_video_ids(nodes: list[dict]) -> set[str]:
    out: set[str] = set()
    for node in nodes:
        if node["__typename"] == "GraphVideo":
            out.add(node["id"])
        elif node["__typename"] == "GraphSidecar":
            out |= {
                e["node"]["id"] for e in node["edge_sidecar_to_children"]["edges"] if e["node"]["is_video"]
            }
    return out


CAPTIONS = [
    "Sunset over the Hudson 🌇 &amp; friends #NewYork #nyc",
    "Rainy day ☔️ in the city… #London #Café #rain",
    "Tom &amp; Jerry&#39;s favourite spot 🧀 #caf&eacute; #food",
    "Nothing to see here",
    "Mehr Licht! #Straße #Zürich 🇨🇭\nsecond line #travel",
    "👨‍👩‍👧 family day #family_time #2017",
]


def feed(first_id: int, count: int, *, seed: int = 0, start_ts: int = 1_500_000_000) -> list[dict]:
    """A deterministic hashtag feed: images, a sidecar every 17 posts (one child is a video every
    other time), a video every 23, no caption every 29, an owner without username every 6."""
    nodes = []
    for i in range(count):
        media_id = first_id + i * 1000
        n = i + seed
        kind = "sidecar" if n % 17 == 5 else "video" if n % 23 == 7 else "image"
        children = None
        if kind == "sidecar":
            children = [child_node(media_id + k) for k in (1, 2)]
            if n % 2:
                children.append(child_node(media_id + 3, is_video=True))
        nodes.append(
            post_node(
                media_id,
                taken_at=start_ts - i * 3600,
                caption=None if n % 29 == 3 else f"{CAPTIONS[n % len(CAPTIONS)]} #post{n}",
                username=None if n % 6 == 1 else f"user{n % 9}",
                owner_id=str(5000 + n % 9),
                kind=kind,
                children=children,
                likes=n % 50,
                comments=n % 7,
            )
        )
    return nodes


# ------------------------------------------------------------------------------------------ fake Instagram
Failure = tuple[int, str, dict[str, str]]  # status, reason, headers


class FakeInstagram:
    """Instagram's endpoints for hashtags and post metadata, answered in memory (see module docstring).

    ``fail(kind, info)`` may return a ``Failure`` to answer instead: ``kind`` is ``tag``, ``page`` or
    ``post``, ``info`` holds ``tag``/``after``/``shortcode``.
    """

    def __init__(self, hashtags: dict[str, list[dict]], *, latency_s: float = 0.0) -> None:
        self.hashtags = hashtags
        self.latency_s = latency_s
        self.posts = {n["shortcode"]: n for nodes in hashtags.values() for n in nodes}
        self.media: dict[str, tuple[bytes, str]] = {}  # CDN URL path -> (bytes, content type)
        self.requests: list[tuple[str, str]] = []
        self.fail: Callable[[str, dict[str, Any]], Failure | None] = lambda kind, info: None
        self._lock = threading.Lock()

    # -------------------------------------------------------------- routing
    def send(self, request: requests.PreparedRequest) -> requests.Response:
        url = urlsplit(request.url or "")
        with self._lock:
            self.requests.append((request.method or "", f"{url.hostname}{url.path}"))
        if self.latency_s:
            time.sleep(self.latency_s)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if (url.hostname or "").endswith(".cdninstagram.com"):
            if url.path not in self.media:
                return _response(request, 404, "Not Found", {})
            data, content_type = self.media[url.path]
            return _raw_response(request, data, content_type)
        if url.hostname == "i.instagram.com" and url.path == "/api/v1/tags/web_info/":
            tag = query.get("tag_name", "")
            return self._answer(request, "tag", {"tag": tag}, lambda: self._tag_info(tag))
        if url.hostname == "www.instagram.com" and url.path == "/graphql/query" and request.method == "GET":
            variables = json.loads(query["variables"])
            info = {"tag": variables.get("tag_name"), "after": variables.get("after")}
            return self._answer(request, "page", info, lambda: self._page(variables))
        if url.hostname == "www.instagram.com" and url.path == "/graphql/query" and request.method == "POST":
            body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
            form = {k: v[0] for k, v in parse_qs(body).items()}
            code = json.loads(form["variables"]).get("shortcode")
            return self._answer(request, "post", {"shortcode": code}, lambda: self._post_info(code))
        raise AssertionError(
            f"unexpected request to {request.method} {request.url}: tests never touch the network"
        )

    def _answer(self, request, kind: str, info: dict[str, Any], body: Callable[[], Any]) -> requests.Response:
        failure = self.fail(kind, info)
        if failure is not None:
            status, reason, headers = failure
            return _response(request, status, reason, {"status": "fail", "message": reason}, headers)
        payload = body()
        if payload is None:
            return _response(request, 404, "Not Found", {"status": "fail", "message": "not found"})
        return _response(request, 200, "OK", payload)

    def _tag_info(self, tag: str) -> Any:
        if tag not in self.hashtags:
            return None
        info = {"name": tag, "id": f"1784{zlib.crc32(tag.encode())}", "media_count": len(self.hashtags[tag])}
        return {"data": info, "status": "ok"}

    def _page(self, variables: dict[str, Any]) -> Any:
        nodes = self.hashtags.get(variables.get("tag_name", ""))
        if nodes is None:
            return None
        start = int(variables.get("after") or 0)
        end = start + int(variables.get("first") or 12)
        connection = {
            "count": len(nodes),
            "page_info": {"has_next_page": end < len(nodes), "end_cursor": str(end)},
            "edges": [{"node": json.loads(json.dumps(n))} for n in nodes[start:end]],
        }
        hashtag = {"name": variables["tag_name"], "edge_hashtag_to_media": connection}
        return {"data": {"hashtag": hashtag}, "status": "ok"}

    def _post_info(self, code: str) -> Any:
        node = self.posts.get(code)
        if node is None:
            return None
        owner_id = node["owner"]["id"]
        item = {
            "media_type": {"GraphImage": 1, "GraphVideo": 2, "GraphSidecar": 8}[node["__typename"]],
            "code": code,
            "pk": node["id"],
            "taken_at": node["taken_at_timestamp"],
            "user": {"pk": owner_id, "username": f"owner{owner_id}", "full_name": "Owner"},
            "image_versions2": {"candidates": [{"url": node["display_url"], "width": 1080, "height": 1080}]},
            "like_count": node["edge_liked_by"]["count"],
            "comment_count": node["edge_media_to_comment"]["count"],
        }
        return {"data": {"xdt_api__v1__media__shortcode__web_info": {"items": [item]}}, "status": "ok"}

    # -------------------------------------------------------------- install
    @contextlib.contextmanager
    def installed(self) -> Iterator[FakeInstagram]:
        """Answer every ``requests`` call of this process for as long as the block runs."""

        def fake_send(adapter: Any, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            return self.send(request)

        with mock.patch.object(requests.adapters.HTTPAdapter, "send", fake_send):
            yield self


def _response(request, status: int, reason: str, payload: Any, headers: dict[str, str] | None = None):
    body = json.dumps(payload).encode()
    resp = requests.Response()
    resp.status_code = status
    resp.reason = reason
    resp.headers.update({"Content-Type": "application/json; charset=utf-8", **(headers or {})})
    resp._content = body
    resp._content_consumed = True
    resp.raw = io.BytesIO(body)
    resp.url = request.url
    resp.request = request
    resp.encoding = "utf-8"
    return resp


def _raw_response(request, data: bytes, content_type: str):
    resp = _response(request, 200, "OK", None)
    resp.headers["Content-Type"] = content_type
    resp._content = data
    resp.raw = io.BytesIO(data)
    return resp


def failure(status: int) -> Failure:
    reasons = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests", 500: "Internal Server Error"}
    return status, reasons[status], {}


LOGIN_REDIRECT: Failure = (302, "Found", {"location": "https://www.instagram.com/accounts/login/?next=/"})


# ------------------------------------------------------------------------------------------ loader
class RecordingRateController(instaloader.RateController):
    """instaloader's own rate controller, deciding as always; the waits it decides are recorded, not slept."""

    def __init__(self, context: instaloader.InstaloaderContext) -> None:
        super().__init__(context)
        self.waits: list[float] = []
        self.handled_429 = 0

    def sleep(self, secs: float) -> None:
        self.waits.append(secs)

    def handle_429(self, query_type: str) -> None:
        self.handled_429 += 1
        super().handle_429(query_type)


def write_session_file(path: Path, username: str = TEST_USER) -> Path:
    """A session file exactly as instaloader saves one (a pickled cookie dict)."""
    cookies = {"sessionid": SESSION_SECRET, "csrftoken": CSRF_SECRET, "ds_user_id": "4242", "mid": "Zm9vYmFy"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(cookies, fh)
    return path


def offline_loader(session_file: Path | None) -> instaloader.Instaloader:
    from photocorpus.sources.instagram import open_instaloader

    return open_instaloader(
        login=TEST_USER if session_file else None,
        session_file=session_file,
        sleep=False,
        rate_controller=RecordingRateController,
    )
