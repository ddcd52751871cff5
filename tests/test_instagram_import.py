"""Import of folders that instaloader (its own ``download_post``) and InstaLooter wrote.

The instaloader folders are written by instaloader itself: ``Instaloader.download_post`` runs for
real, its image requests answered by :class:`FakeInstagram` with the shared InstaNY100K photos, so
file names, sidecar suffixes, video thumbnails, caption files and the xz JSON are instaloader's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import instaloader
import pytest
from instaloader import FrozenNodeIterator, Hashtag, Post, save_structure_to_file

from photocorpus.corpus import Corpus
from photocorpus.importing import import_folder
from photocorpus.sources.folder import detect_layout
from photocorpus.sources.instagram import InstagramQuery, InstaloaderPosts, harvest_instagram
from tests.helpers import catalog_dump
from tests.test_instagram_support import (
    FakeInstagram,
    child_node,
    offline_loader,
    post_node,
    write_session_file,
)

# (caption text, the hashtags a reader sees in it)
TEMPLATES = [
    ("Sunset over the Hudson 🌇 &amp; friends #NewYork #nyc", ["newyork", "nyc"]),
    ("Tom &amp; Jerry&#39;s favourite spot 🧀 #caf&eacute; #Food", ["café", "food"]),
    ("Mehr Licht! #Zürich 🇨🇭\nzweite Zeile #travel #ZÜRICH", ["zürich", "travel"]),
    ("👨‍👩‍👧 family day #family_time #2017 #東京", ["family_time", "2017", "東京"]),
    ("Nothing to see here &lt;3", []),
]
BASE_TS = 1_480_000_000


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _serve(fake: FakeInstagram, node: dict, photo: Path, content_type: str = "image/jpeg") -> None:
    fake.media[urlsplit(node["display_url"]).path] = (photo.read_bytes(), content_type)
    if "video_url" in node:
        fake.media[urlsplit(node["video_url"]).path] = (
            b"\x00\x00\x00\x18ftypmp42 not a real video",
            "video/mp4",
        )


def build_acceptance_posts(photos: list[Path]) -> tuple[list[dict], dict[str, dict], FakeInstagram]:
    """200 posts: 195 images, 3 sidecars (2, 3 and 3 images, the last also with a video), 2 videos,
    one post without a caption. Returns the nodes, the truth per photo id, and the serving fake."""
    fake = FakeInstagram({})
    photos = iter(photos)
    nodes: list[dict] = []
    truth: dict[str, dict] = {}
    sidecar_at = {20: 2, 90: 3, 150: 3}
    video_at = {40, 170}
    for i in range(200):
        text, tags = TEMPLATES[i % len(TEMPLATES)]
        caption = None if i == 77 else f"{text} #post{i}"
        expected_tags = [] if caption is None else [*tags, f"post{i}"]
        owner = (f"owner{i % 7}", str(900 + i % 7))
        common = {
            "taken_at": BASE_TS + i * 3600,
            "caption": caption,
            "username": owner[0],
            "owner_id": owner[1],
        }
        if i in video_at:
            node = post_node(10**17 + i, kind="video", **common)
            _serve(fake, node, next(photos))  # the thumbnail instaloader saves next to the video
        elif i in sidecar_at:
            child_photos = [next(photos) for _ in range(sidecar_at[i])]
            children = [child_node(photo.stem) for photo in child_photos]
            if i == 150:
                children.append(child_node(10**17 + 5000 + i, is_video=True))
                child_photos.append(next(photos))  # its thumbnail
            node = post_node(10**17 + i, kind="sidecar", children=children, **common)
            for index, (child, photo) in enumerate(zip(children, child_photos, strict=True), start=1):
                _serve(fake, child, photo)
                if not child["is_video"]:
                    truth[child["id"]] = dict(
                        common, tags=expected_tags, sidecar=(node["id"], index), photo=photo
                    )
        else:
            photo = next(photos)
            node = post_node(photo.stem, **common)
            _serve(fake, node, photo)
            truth[node["id"]] = dict(common, tags=expected_tags, sidecar=None, photo=photo)
        nodes.append(node)
    return nodes, truth, fake


def write_with_instaloader(
    root: Path, target: str, nodes: list[dict], fake: FakeInstagram, compress: bool, profile_pic: Path
) -> Path:
    """Run instaloader's own download_post for each node, as `instaloader` would for the target."""
    loader = instaloader.Instaloader(
        sleep=False, quiet=True, dirname_pattern=str(root / "{target}"), compress_json=compress
    )
    with fake.installed():
        for node in nodes:
            assert loader.download_post(Post(loader.context, node), target=target)
        hashtag = Hashtag(loader.context, {"name": target.lstrip("#"), "id": "17841", "profile_pic_url": ""})
        loader.save_metadata_json(str(root / target / target), hashtag)
    folder = root / target
    frozen = FrozenNodeIterator("h", {}, None, None, 3, 1.0, {"edges": []}, None, None)
    save_structure_to_file(frozen, str(folder / "iterator_Abc123.json.xz"))  # a resume file: not a post
    shutil.copy(profile_pic, folder / "2017-01-01_00-00-00_UTC_profile_pic.jpg")  # a title picture
    loader.close()
    return folder


@pytest.fixture()
def acceptance(instany_images: Path, tmp_path: Path):
    photos = sorted(instany_images.glob("*.jpg"))[:215]
    nodes, truth, fake = build_acceptance_posts(photos)
    folder = write_with_instaloader(tmp_path / "downloads", "#london", nodes, fake, True, photos[-1])
    return folder, nodes, truth


def test_instaloader_folder_of_200_posts_imports_the_right_photos(acceptance, tmp_path: Path) -> None:
    folder, nodes, truth = acceptance
    assert len(list(folder.glob("*.json.xz"))) == 200 + 2  # the posts, the hashtag and a resume file
    assert len(list(folder.glob("*_UTC.txt"))) == 199  # instaloader writes no caption file when none
    assert len(truth) == 195 + 2 + 3 + 3
    assert detect_layout(folder.parent) == "instaloader"
    corpus = Corpus.create(tmp_path / "corpus")
    report = import_folder(corpus, folder.parent, workers=2)
    assert report.layout == "instaloader"
    assert (report.imported, report.failed, report.skipped) == (203, 0, {"video": 3})
    assert corpus.count_photos() == 203
    assert corpus.status_summary()["counters"]["import"] == {"skipped_videos": 3}
    for media_id, want in truth.items():
        photo = corpus.photo(corpus.photo_ids("instagram", [media_id])[media_id])
        caption = want["caption"] and unicodedata.normalize("NFC", want["caption"])
        assert photo["caption"] == caption, media_id
        assert photo["hashtags"] == want["tags"], media_id
        taken = datetime.fromtimestamp(want["taken_at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert (photo["taken_at"], photo["owner"], photo["owner_id"]) == (
            taken,
            want["username"],
            want["owner_id"],
        )
        assert photo["labels"] == ["london"]
        assert photo["file"]["sha256"] == _sha(want["photo"])
        if want["sidecar"]:
            assert (photo["extra"]["post_id"], photo["extra"]["sidecar_index"]) == want["sidecar"]
        else:
            assert photo["extra"]["post_id"] == media_id and "sidecar_index" not in photo["extra"]
    no_caption = corpus.photo(corpus.photo_ids("instagram", [nodes[77]["id"]])[nodes[77]["id"]])
    assert no_caption["caption"] is None and no_caption["hashtags"] == []
    assert corpus.verify().ok

    before = catalog_dump(corpus.root)
    again = import_folder(corpus, folder.parent, workers=2)
    assert (again.imported, again.skipped_existing, again.skipped) == (0, 203, {"video": 3})
    assert catalog_dump(corpus.root) == before
    assert corpus.status_summary()["counters"]["import"] == {"skipped_videos": 3}
    corpus.close()


def test_harvested_and_imported_posts_are_the_same_rows(acceptance, tmp_path: Path) -> None:
    folder, nodes, truth = acceptance
    fake = FakeInstagram({"london": nodes[:60]})
    corpus = Corpus.create(tmp_path / "corpus")
    with fake.installed():
        loader = offline_loader(write_session_file(tmp_path / "session-tester"))
        harvest_instagram(corpus, [InstagramQuery.hashtag("london")], InstaloaderPosts(loader))
    harvested = corpus.count_photos()
    assert harvested == sum(1 for i in truth if any(i == n["id"] for n in nodes[:60])) + 2  # + sidecar 20
    import_folder(corpus, folder, workers=1)
    assert corpus.count_photos() == 203  # the harvested rows gained their files, no duplicates
    status = corpus.status_summary()
    assert status["stages"]["fetch"]["done"] == 203
    assert (
        status["counters"]["harvest"]["skipped_videos"] == 1
        and status["counters"]["import"]["skipped_videos"] == 3
    )
    corpus.close()


def test_uncompressed_own_profile_dump_and_instacities_rows_merge(
    instany_images: Path, tmp_path: Path
) -> None:
    photos = sorted(instany_images.glob("*.jpg"))[300:306]
    fake = FakeInstagram({})
    nodes = []
    for i, photo in enumerate(photos):
        node = post_node(photo.stem, taken_at=BASE_TS + i, caption=f"me again #selfie{i}", username="me")
        _serve(fake, node, photo)
        nodes.append(node)
    folder = write_with_instaloader(tmp_path / "dump", "me", nodes, fake, False, photos[0])
    assert len(list(folder.glob("*_UTC.json"))) == 6 and not list(folder.glob("*_UTC.json.xz"))
    # The same media ids in an InstaCities1M folder (label = city): one catalog row per photo.
    city = tmp_path / "InstaCities1M"
    (city / "img_resized" / "newyork").mkdir(parents=True)
    (city / "captions_resized" / "newyork").mkdir(parents=True)
    for photo in photos[:3]:
        shutil.copy(photo, city / "img_resized" / "newyork" / photo.name)
        (city / "captions_resized" / "newyork" / f"{photo.stem}.txt").write_text("nyc #newyork", "utf-8")
    corpus = Corpus.create(tmp_path / "corpus")
    import_folder(corpus, city, workers=1)
    report = import_folder(corpus, folder, workers=1)
    assert report.layout == "instaloader" and report.imported == 3 and report.skipped_existing == 3
    assert corpus.count_photos() == 6
    first = corpus.photo(corpus.photo_ids("instagram", [photos[0].stem])[photos[0].stem])
    # Already imported with its file: the import skips it before reading (the foundation's resume rule).
    assert first["labels"] == ["newyork"] and first["caption"] == "nyc #newyork"
    last = corpus.photo(corpus.photo_ids("instagram", [photos[5].stem])[photos[5].stem])
    assert (last["labels"], last["owner"], last["hashtags"]) == (["me"], "me", ["selfie5"])
    corpus.close()


def test_images_without_metadata_json_import_as_plain_files(instany_images: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dl" / "#paris"
    folder.mkdir(parents=True)
    photos = sorted(instany_images.glob("*.jpg"))[400:403]
    loader = instaloader.Instaloader(sleep=False, quiet=True)
    node = post_node(photos[0].stem, taken_at=BASE_TS, caption="with json #paris")
    save_structure_to_file(Post(loader.context, node), str(folder / "2016-11-24_15-06-40_UTC.json.xz"))
    shutil.copy(photos[0], folder / "2016-11-24_15-06-40_UTC.jpg")
    shutil.copy(photos[1], folder / "2016-11-25_10-00-00_UTC.jpg")  # --no-metadata-json download
    (folder / "2016-11-25_10-00-00_UTC.txt").write_text("no json here #paris\n", "utf-8")
    shutil.copy(photos[2], folder / "2016-11-26_10-00-00_UTC_profile_pic.jpg")
    (folder / "2016-11-27_10-00-00_UTC.json.xz").write_bytes(b"\xfd7zXZ broken")
    corpus = Corpus.create(tmp_path / "corpus")
    report = import_folder(corpus, folder.parent, workers=1)
    assert report.layout == "instaloader" and report.imported == 2 and report.failed == 0
    rows = dict(corpus.conn.execute("SELECT source || ':' || source_id, caption FROM photos").fetchall())
    assert rows == {
        f"instagram:{photos[0].stem}": "with json #paris",
        "folder:#paris/2016-11-25_10-00-00_UTC": "no json here #paris",
    }
    corpus.close()


def test_instalooter_folder_with_json_dumps(instany_images: Path, tmp_path: Path) -> None:
    folder = tmp_path / "instalooter" / "london"
    folder.mkdir(parents=True)
    photos = sorted(instany_images.glob("*.jpg"))[500:505]
    image = post_node(photos[0].stem, taken_at=BASE_TS, caption="Big Ben &amp; me #London", username="bob")
    # InstaLooter dumps a sidecar under the post's id with its children popped, and names each child
    # image after the child's own id, without a JSON of its own.
    sidecar = post_node(10**17 + 1, taken_at=BASE_TS + 1, caption="two #views", kind="sidecar", children=[])
    del sidecar["edge_sidecar_to_children"]
    video = post_node(10**17 + 2, taken_at=BASE_TS + 2, caption="clip", kind="video")
    for node in (image, sidecar, video):
        (folder / f"{node['id']}.json").write_text(json.dumps(node, indent=4, sort_keys=True), "utf-8")
    for photo in photos[:3]:
        shutil.copy(photo, folder / photo.name)  # photos[1:3] are the sidecar's children
    (folder / f"{video['id']}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (folder / f"{10**17 + 3}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # a video without a dump
    assert detect_layout(folder.parent) == "instalooter"
    corpus = Corpus.create(tmp_path / "corpus")
    report = import_folder(corpus, folder.parent, workers=1)
    assert (report.imported, report.skipped) == (3, {"video": 2})
    first = corpus.photo(corpus.photo_ids("instagram", [photos[0].stem])[photos[0].stem])
    assert (first["caption"], first["hashtags"], first["owner"]) == (
        "Big Ben &amp; me #London",
        ["london"],
        "bob",
    )
    assert first["labels"] == ["london"] and first["extra"]["shortcode"] == image["shortcode"]
    child = corpus.photo(corpus.photo_ids("instagram", [photos[1].stem])[photos[1].stem])
    assert child["caption"] is None and child["file"]["sha256"] == _sha(photos[1])
    assert corpus.status_summary()["counters"]["import"] == {"skipped_videos": 2}
    corpus.close()


def test_plain_folders_of_media_id_names_keep_their_layout(instany_images: Path, tmp_path: Path) -> None:
    src = tmp_path / "ids"
    src.mkdir()
    for photo in sorted(instany_images.glob("*.jpg"))[:3]:
        shutil.copy(photo, src / photo.name)
    (src / f"{sorted(instany_images.glob('*.jpg'))[0].stem}.json").write_text('{"title": "x"}', "utf-8")
    assert detect_layout(src) == "plain"
