"""The Instagram adapter on real instaloader Posts, and the harvest through instaloader's real stack.

Every request goes to :class:`FakeInstagram` at the HTTP transport, so instaloader's own get_json,
retries, rate controller, Hashtag and NodeIterator run unchanged; nothing reaches the network.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import instaloader
import pytest
from instaloader import Post

from photocorpus.config import InstagramSettings, Settings
from photocorpus.corpus import Corpus
from photocorpus.errors import ConfigError, PhotocorpusError
from photocorpus.fetch.politeness import url_expired
from photocorpus.sources.instagram import (
    InstagramError,
    InstagramQuery,
    InstaloaderPosts,
    classify_instaloader_error,
    harvest_instagram,
    load_resume_state,
    open_instaloader,
)
from photocorpus.sources.instagram_posts import post_media
from tests.conftest import run_cli
from tests.helpers import catalog_dump
from tests.test_instagram_support import (
    CSRF_SECRET,
    LOGIN_REDIRECT,
    SESSION_SECRET,
    Failure,
    FakeInstagram,
    child_node,
    expected_photo_ids,
    expected_video_ids,
    failure,
    feed,
    offline_loader,
    post_node,
    write_session_file,
)

LONDON = InstagramQuery.hashtag("london")


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture()
def context() -> instaloader.InstaloaderContext:
    return instaloader.InstaloaderContext(sleep=False, quiet=True)


def _corpus(tmp_path: Path, name: str = "c", **instagram: object) -> Corpus:
    return Corpus.create(tmp_path / name, Settings(instagram=InstagramSettings(**instagram)))


def _photo_ids(corpus: Corpus) -> list[str]:
    return sorted(
        r[0] for r in corpus.conn.execute("SELECT source_id FROM photos WHERE source = 'instagram'")
    )


def _urls(corpus_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(corpus_dir / "catalog.sqlite")
    try:
        return conn.execute(
            "SELECT photo_id, size_key, url, width, height FROM image_urls ORDER BY 1, 2"
        ).fetchall()
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ adapter
def test_image_post_becomes_one_record_with_every_field(context) -> None:
    node = post_node(
        1480880010192837119,
        taken_at=1_491_000_000,
        caption="Brunch at Tom &amp; Jerry&#39;s 🥞\n#NYC #Brunch #caf&eacute; #nyc",
        owner_id="42",
        username="Alice.B",
        likes=31,
        comments=4,
        location={
            "id": "212988663",
            "has_public_page": True,
            "name": "New York, New York",
            "slug": "new-york",
            "lat": 40.7142,
            "lng": -74.0064,
        },
        accessibility="Photo by Alice on April 01, 2017. Image may contain: food",
    )
    media = post_media(Post(context, node), "newyork")
    assert media.videos == [] and len(media.records) == 1
    rec = media.records[0]
    assert (rec.source, rec.source_id, rec.labels) == ("instagram", "1480880010192837119", ["newyork"])
    assert rec.caption == node["edge_media_to_caption"]["edges"][0]["node"]["text"]  # raw, entities kept
    assert rec.hashtags == ["nyc", "brunch", "café"]  # unescaped, lower-cased, unique, in order
    assert (rec.owner, rec.owner_id) == ("alice.b", "42")
    assert rec.taken_at == _iso(1_491_000_000) == "2017-03-31T22:40:00Z"
    assert (rec.lat, rec.lon) == (40.7142, -74.0064)
    assert rec.page_url == f"https://www.instagram.com/p/{node['shortcode']}/"
    assert rec.extra["post_id"] == "1480880010192837119" and rec.extra["shortcode"] == node["shortcode"]
    assert (rec.extra["likes"], rec.extra["comments"]) == (31, 4)
    assert rec.extra["location"] == {"id": "212988663", "name": "New York, New York", "slug": "new-york"}
    assert rec.extra["accessibility_caption"].startswith("Photo by Alice")
    sizes = {u.size_key: (u.url, u.width, u.height) for u in rec.urls}
    assert sizes["display"] == (node["display_url"], 1080, 1080)
    assert sizes["640x640"][1:] == (640, 640) and sizes["750x750"][1:] == (750, 750)
    assert "1080x1080" not in sizes  # the same URL as display, listed once


def test_sidecar_becomes_one_photo_per_image_child_and_skips_its_videos(context) -> None:
    children = [
        child_node(9001, accessibility="Image may contain: bridge"),
        child_node(9002, is_video=True),
        child_node(9003),
    ]
    node = post_node(
        9000, taken_at=1_500_000_000, caption="Three views #bridge", kind="sidecar", children=children
    )
    media = post_media(Post(context, node), "london")
    assert [r.source_id for r in media.records] == ["9001", "9003"]
    assert [(v.source_id, v.sidecar_index) for v in media.videos] == [("9002", 2)]
    for rec, index in zip(media.records, (1, 3), strict=True):
        assert rec.extra["post_id"] == "9000" and rec.extra["shortcode"] == node["shortcode"]
        assert (rec.extra["sidecar_index"], rec.extra["sidecar_count"]) == (index, 3)
        assert rec.caption == "Three views #bridge" and rec.hashtags == ["bridge"]
        assert rec.page_url.endswith(f"?img_index={index}")
        assert rec.urls[0].size_key == "display" and rec.urls[0].url == children[index - 1]["display_url"]
        assert (rec.urls[0].width, rec.urls[0].height) == (1080, 1350)
    assert media.records[0].extra["accessibility_caption"] == "Image may contain: bridge"
    assert "accessibility_caption" not in media.records[1].extra


def test_video_post_is_skipped_and_post_without_caption_has_none(context) -> None:
    video = post_media(Post(context, post_node(77, taken_at=1, caption="clip #x", kind="video")), "x")
    assert video.records == [] and [v.source_id for v in video.videos] == ["77"]
    bare = post_media(Post(context, post_node(78, taken_at=1, caption=None)), "x").records[0]
    assert bare.caption is None and bare.hashtags == []


def test_iphone_struct_posts_from_logged_in_profile_listings(context) -> None:
    """Profile.get_posts() (logged in) wraps iPhone-API media with Post.from_iphone_struct."""
    media = {
        "code": shortcode_of(555),
        "pk": 555,
        "media_type": 8,
        "taken_at": 1_600_000_000,
        "caption": {"text": "Carousel 🎠 #Fun"},
        "has_liked": False,
        "like_count": 12,
        "comment_count": 3,
        "user": {"pk": 9, "username": "Bob", "full_name": "Bob", "is_private": False, "profile_pic_url": ""},
        "image_versions2": {
            "candidates": [{"url": "https://scontent.cdninstagram.com/a.jpg", "width": 1440, "height": 1800}]
        },
        "carousel_media": [
            {
                "pk": 556,
                "media_type": 1,
                "original_width": 1440,
                "original_height": 1800,
                "image_versions2": {
                    "candidates": [
                        {"url": "https://scontent.cdninstagram.com/b1.jpg", "width": 1440, "height": 1800},
                        {"url": "https://scontent.cdninstagram.com/b2.jpg", "width": 640, "height": 800},
                    ]
                },
            },
            {
                "pk": 557,
                "media_type": 2,
                "video_versions": [{"url": "https://scontent.cdninstagram.com/v.mp4"}],
                "image_versions2": {
                    "candidates": [
                        {"url": "https://scontent.cdninstagram.com/c.jpg", "width": 1, "height": 1}
                    ]
                },
            },
        ],
    }
    result = post_media(Post.from_iphone_struct(context, media), "bob")
    assert [r.source_id for r in result.records] == ["556"] and [v.source_id for v in result.videos] == [
        "557"
    ]
    rec = result.records[0]
    assert (rec.owner, rec.owner_id, rec.extra["likes"], rec.extra["comments"]) == ("bob", "9", 12, 3)
    assert rec.hashtags == ["fun"] and rec.taken_at == _iso(1_600_000_000)
    assert {(u.size_key, u.width, u.height) for u in rec.urls} == {
        ("display", 1440, 1800),
        ("640x800", 640, 800),
    }


def shortcode_of(media_id: int) -> str:
    return Post.mediaid_to_shortcode(media_id)


def test_owner_username_lookup_goes_through_instaloader(tmp_path: Path) -> None:
    node = post_node(31337, taken_at=1_500_000_000, caption="hi", owner_id="77", username=None)
    fake = FakeInstagram({"london": [node]})
    with fake.installed():
        loader = offline_loader(write_session_file(tmp_path / "session-tester"))
        assert post_media(Post(loader.context, dict(node)), "l", owner_lookup=False).records[0].owner is None
        assert fake.requests == []
        rec = post_media(Post(loader.context, dict(node)), "l", owner_lookup=True).records[0]
        assert (rec.owner, rec.owner_id) == ("owner77", "77")
        assert fake.requests == [("POST", "www.instagram.com/graphql/query")]
        fake.posts.clear()  # the post was deleted meanwhile: Instagram answers 404
        gone = post_media(Post(loader.context, dict(node)), "l", owner_lookup=True).records[0]
        assert gone.owner is None and gone.extra["owner_lookup_failed"] is True


# ------------------------------------------------------------------------------------------ harvest
def _harvest(corpus: Corpus, fake: FakeInstagram, session: Path | None, queries=(LONDON,), **options):
    with fake.installed():
        loader = offline_loader(session)
        return harvest_instagram(corpus, list(queries), InstaloaderPosts(loader), **options), loader


def test_hashtag_harvest_records_photos_labels_videos_and_completes(tmp_path: Path) -> None:
    london, newyork = feed(1_000_000_000_000_000_000, 80), feed(2_000_000_000_000_000_000, 30, seed=3)
    shared = london[10]
    fake = FakeInstagram({"london": london, "newyork": [*newyork, shared]})
    session = write_session_file(tmp_path / "session-tester")
    corpus = _corpus(tmp_path, commit_every_posts=7)
    report, _ = _harvest(corpus, fake, session, (LONDON, InstagramQuery.hashtag("#NewYork")))
    nodes = london + newyork
    assert _photo_ids(corpus) == sorted(expected_photo_ids(nodes))
    assert [q.status for q in report.queries] == ["complete", "complete"]
    assert report.queries[0].posts == 80 and report.queries[1].posts == 31
    summary = corpus.status_summary()
    assert summary["counters"]["harvest"]["skipped_videos"] == len(expected_video_ids(nodes))
    labels = corpus.photo(corpus.photo_ids("instagram", [shared["id"]])[shared["id"]])["labels"]
    assert labels == ["london", "newyork"]  # one row, both labels
    assert summary["labels"]["newyork"] == len(expected_photo_ids([*newyork, shared]))
    # What fetch needs to tell an expired Instagram URL (403 -> url_expired) from a ban: the CDN's
    # signed expiry and the time each URL was harvested.
    for photo_id in corpus.photo_ids("instagram", _photo_ids(corpus)).values():
        for url in corpus.photo(photo_id)["urls"]:
            assert url["harvested_at"] and "oe=" in url["url"]
            assert not url_expired(url["url"], url["harvested_at"], max_age_h=24 * 365)
            assert url_expired(
                url["url"], url["harvested_at"], 24 * 365, now=datetime(2099, 1, 2, tzinfo=UTC)
            )
    assert load_resume_state(corpus, LONDON)["complete"] is True
    # Owners missing from the listing were looked up through instaloader, one request per post.
    no_name = [n for n in nodes if "username" not in n["owner"] and n["__typename"] != "GraphVideo"]
    assert sum(1 for r in fake.requests if r[0] == "POST") == len(no_name) > 0
    before = catalog_dump(corpus.root)
    again, _ = _harvest(corpus, fake, session, (LONDON,))
    assert again.queries[0].status == "already_complete" and catalog_dump(corpus.root) == before
    corpus.close()


def test_max_posts_stops_and_a_larger_max_continues_to_the_same_corpus(tmp_path: Path) -> None:
    nodes = feed(3_000_000_000_000_000_000, 70)
    session = write_session_file(tmp_path / "session-tester")
    reference = _corpus(tmp_path, "ref")
    _harvest(reference, FakeInstagram({"london": nodes}), session)
    corpus = _corpus(tmp_path, commit_every_posts=5)
    first, _ = _harvest(corpus, FakeInstagram({"london": nodes}), session, max_posts=25)
    assert first.queries[0].status == "max_reached" and first.queries[0].posts == 25
    fake = FakeInstagram({"london": nodes})
    same, _ = _harvest(corpus, fake, session, max_posts=25)
    assert same.queries[0].status == "max_reached" and same.queries[0].posts == 0 and fake.requests == []
    more, _ = _harvest(corpus, FakeInstagram({"london": nodes}), session, max_posts=50)
    assert more.queries[0].resumed and more.queries[0].posts == 25 and more.queries[0].posts_in_pass == 50
    rest, _ = _harvest(corpus, FakeInstagram({"london": nodes}), session)
    assert rest.queries[0].status == "complete" and rest.queries[0].posts == 20
    assert catalog_dump(corpus.root) == catalog_dump(reference.root)
    assert corpus.status_summary()["counters"] == reference.status_summary()["counters"]
    corpus.close()
    reference.close()


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (failure(429), "rate_limited", ["429", "rate controller", "re-run the same command"]),
        (failure(403), "forbidden", ["403", "instaloader --login tester", "re-run the same command"]),
        (failure(401), "forbidden", ["401", "instaloader --login tester"]),
        (LOGIN_REDIRECT, "logged_out", ["security check", "instaloader --login tester"]),
    ],
)
def test_instagram_refusals_stop_with_a_clear_message_and_resume(tmp_path: Path, answer, kind, words) -> None:
    nodes = feed(4_000_000_000_000_000_000, 60)
    session = write_session_file(tmp_path / "session-tester")
    reference = _corpus(tmp_path, "ref")
    _harvest(reference, FakeInstagram({"london": nodes}), session)

    corpus = _corpus(tmp_path, commit_every_posts=5)
    fake = FakeInstagram({"london": nodes})
    fake.fail = lambda what, info: answer if what == "page" and info["after"] == "36" else None
    with pytest.raises(InstagramError) as caught:
        _harvest(corpus, fake, session, login="tester")
    error = caught.value
    assert error.kind == kind and error.query == "#london"
    for word in words:
        assert word in str(error)
    assert "Traceback" not in str(error) and SESSION_SECRET not in str(error)
    state = load_resume_state(corpus, LONDON)
    assert state["posts_in_pass"] == 36 and state["stopped"] == "error" and state["frozen"] is not None
    assert len(_photo_ids(corpus)) == len(expected_photo_ids(nodes[:36]))  # every post read was committed

    resumed, _ = _harvest(corpus, FakeInstagram({"london": nodes}), session)
    assert resumed.queries[0].resumed and resumed.queries[0].posts == 24
    assert catalog_dump(corpus.root) == catalog_dump(reference.root)
    assert _urls(corpus.root) == _urls(reference.root)
    assert corpus.status_summary()["counters"] == reference.status_summary()["counters"]
    corpus.close()
    reference.close()


def test_429_is_handled_by_instaloaders_rate_controller_before_we_stop(tmp_path: Path) -> None:
    fake = FakeInstagram({"london": feed(5_000_000_000_000_000_000, 30)})
    fake.fail = lambda what, info: failure(429) if what == "page" and info["after"] == "12" else None
    corpus = _corpus(tmp_path)
    with fake.installed():
        loader = offline_loader(write_session_file(tmp_path / "session-tester"))
        with pytest.raises(InstagramError, match="429"):
            harvest_instagram(corpus, [LONDON], InstaloaderPosts(loader))
    controller = loader.context._rate_controller
    # instaloader retried (3 attempts) and let its controller decide the waits: no sleep of ours.
    assert sum(1 for r in fake.requests if r == ("GET", "www.instagram.com/graphql/query")) == 1 + 3
    assert controller.handled_429 == 2 and controller.waits and max(controller.waits) > 60
    corpus.close()


def test_login_required_is_explained_before_any_request(tmp_path: Path) -> None:
    fake = FakeInstagram({"london": feed(6_000_000_000_000_000_000, 5)})
    corpus = _corpus(tmp_path)
    with pytest.raises(InstagramError) as caught:
        _harvest(corpus, fake, None)
    assert caught.value.kind == "login_required"
    assert "instaloader --login YOUR_USERNAME" in str(caught.value) and "--session-file" in str(caught.value)
    assert fake.requests == []
    corpus.close()


def test_unknown_hashtag_is_reported_and_the_next_query_still_runs(tmp_path: Path) -> None:
    nodes = feed(7_000_000_000_000_000_000, 12)
    corpus = _corpus(tmp_path)
    report, _ = _harvest(
        corpus, FakeInstagram({"london": nodes}), write_session_file(tmp_path / "session-tester"),
        (InstagramQuery.hashtag("nosuchtag"), LONDON),
    )  # fmt: skip
    assert [q.status for q in report.queries] == ["not_found", "complete"]
    assert "#nosuchtag does not exist" in report.queries[0].detail
    assert _photo_ids(corpus) == sorted(expected_photo_ids(nodes))
    corpus.close()


def test_iterator_errors_are_classified_by_type_and_by_instaloaders_message() -> None:
    from instaloader import ConnectionException, LoginRequiredException, TooManyRequestsException

    def wrapped(inner: Exception, text: str) -> Exception:
        try:
            raise ConnectionException(text) from inner
        except ConnectionException as exc:
            return exc

    assert classify_instaloader_error(LoginRequiredException("Login required.")) == "login_required"
    too_many = wrapped(TooManyRequestsException("429 Too Many Requests when accessing x"), "JSON Query: ...")
    assert classify_instaloader_error(too_many) == "rate_limited"
    assert classify_instaloader_error(
        ConnectionException("403 Forbidden when accessing https://x/?a=429")
    ) == ("forbidden")
    assert classify_instaloader_error(ConnectionException("HTTPSConnectionPool: timed out")) == "connection"


def test_session_secrets_never_reach_the_catalog_or_messages(tmp_path: Path, capfd) -> None:
    session = write_session_file(tmp_path / "elsewhere" / "my.session")
    corpus = _corpus(tmp_path)
    fake = FakeInstagram({"london": feed(8_000_000_000_000_000_000, 40)})
    fake.fail = lambda what, info: failure(403) if what == "page" and info["after"] == "24" else None
    with fake.installed():
        with pytest.raises(InstagramError, match="pass --login"):
            open_instaloader(session_file=session)  # no --login and no session-USER file name
        loader = open_instaloader(login="tester", session_file=session, sleep=False)
        with pytest.raises(InstagramError) as caught:
            harvest_instagram(corpus, [LONDON], InstaloaderPosts(loader))
    corpus.close()
    written = b"".join(p.read_bytes() for p in corpus.root.rglob("*") if p.is_file())
    out, err = capfd.readouterr()
    for secret in (SESSION_SECRET, CSRF_SECRET):
        assert secret.encode() not in written
        assert secret not in str(caught.value) and secret not in out and secret not in err


def test_a_cookie_echoed_by_the_server_is_redacted_from_instaloaders_own_messages(
    tmp_path: Path, capfd, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that answers with the session cookie in its error message: instaloader reports each retry
    itself (it would print the message to stderr), and the last one becomes our error. The cookie must
    reach neither stream, nor any log record, nor the exception, nor the corpus."""
    session = write_session_file(tmp_path / "session-tester")
    corpus = _corpus(tmp_path)
    fake = FakeInstagram({"london": feed(8_100_000_000_000_000_000, 40)})
    echo: Failure = (200, f"checkpoint required for sessionid={SESSION_SECRET}", {})
    fake.fail = lambda what, info: echo if what == "page" and info["after"] == "24" else None
    with fake.installed(), caplog.at_level(logging.DEBUG):
        loader = open_instaloader(login="tester", session_file=session, sleep=False)
        with pytest.raises(PhotocorpusError) as caught:
            harvest_instagram(corpus, [LONDON], InstaloaderPosts(loader))
        loader.close()
    corpus.close()
    out, err = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    written = b"".join(p.read_bytes() for p in corpus.root.rglob("*") if p.is_file())
    for text in (out, err, logged, str(caught.value)):
        assert SESSION_SECRET not in text
    assert SESSION_SECRET.encode() not in written
    assert "checkpoint required" in logged  # the retries were reported, through our log


# ------------------------------------------------------------------------------------------ CLI
def test_queries_are_validated() -> None:
    assert InstagramQuery.hashtag("#London").key == "#london"
    assert InstagramQuery.profile("@Some.User_1").key == "@some.user_1"
    with pytest.raises(ConfigError):
        InstagramQuery.hashtag("new york")
    with pytest.raises(ConfigError):
        InstagramQuery.profile("../etc")


def test_cli_explains_logins_without_touching_the_network(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from photocorpus.cli import app

    run_cli("init", str(tmp_path / "c"))
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = run_cli(
        "harvest", "instagram", "-t", "london", "-C", str(tmp_path / "c"), "-q", env=env, check=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "instaloader --login YOUR_USERNAME" in proc.stderr
    proc = run_cli(
        "harvest",
        "instagram",
        "-t",
        "london",
        "--login",
        "nobody",
        "-C",
        str(tmp_path / "c"),
        env=env,
        check=False,
    )
    assert proc.returncode == 2 and "no instaloader session for nobody" in proc.stderr
    assert str(tmp_path / "config" / "instaloader" / "session-nobody") in proc.stderr
    broken = tmp_path / "session-someone"
    broken.write_bytes(b"not a pickle")
    proc = run_cli(
        "harvest",
        "instagram",
        "-t",
        "x",
        "--session-file",
        str(broken),
        "-C",
        str(tmp_path / "c"),
        check=False,
    )
    assert proc.returncode == 2 and "not a readable instaloader session file" in proc.stderr
    assert "instagram" in CliRunner().invoke(app, ["harvest", "--help"]).output
    no_query = CliRunner().invoke(app, ["harvest", "instagram", "-C", str(tmp_path / "c")])
    assert isinstance(no_query.exception, ConfigError) and "--hashtag" in str(no_query.exception)


def test_a_malformed_post_is_skipped_and_the_harvest_goes_on(tmp_path: Path) -> None:
    nodes = feed(9_000_000_000_000_000_000, 20)
    nodes[4] = dict(
        nodes[4], __typename="GraphImage", edge_media_to_caption={"edges": [{"node": {"text": 5}}]}
    )
    nodes[9] = dict(nodes[9], __typename="GraphImage", location={"lat": "north", "lng": None}, dimensions=[1])
    corpus = _corpus(tmp_path)
    report, _ = _harvest(
        corpus, FakeInstagram({"london": nodes}), write_session_file(tmp_path / "session-tester")
    )
    assert report.queries[0].status == "complete" and report.queries[0].unreadable == 1
    assert _photo_ids(corpus) == sorted(expected_photo_ids(nodes) - {nodes[4]["id"]})
    odd = corpus.photo(corpus.photo_ids("instagram", [nodes[9]["id"]])[nodes[9]["id"]])
    display = next(u for u in odd["urls"] if u["size_key"] == "display")
    assert (odd["lat"], odd["lon"], display["width"], display["height"]) == (None, None, None, None)
    corpus.close()
