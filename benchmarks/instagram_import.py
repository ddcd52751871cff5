"""What reading Instagram metadata costs: the adapter, the harvest's own overhead, and the import of an
instaloader folder against the same images as a plain folder.

* adapter: ``post_media`` on real ``instaloader.Post`` objects (no request), posts per second;
* harvest overhead: the real harvest (instaloader's Hashtag, NodeIterator, get_json, rate controller;
  our adapter, commits and resume state) against the in-memory transport of the tests, with no
  latency, so the rate is what photocorpus and instaloader cost per post, not Instagram;
* import: the InstaNY100K photos written as an instaloader folder (xz JSON + caption per post, by
  instaloader's own writers) imported with ``import_folder``, against the same photos as a plain
  folder; the difference is the metadata reading in the listing.

    python benchmarks/instagram_import.py [--posts 3007] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import instaloader
from instaloader import Post
from tests.test_instagram_support import FakeInstagram, feed, offline_loader, post_node, write_session_file

from photocorpus.corpus import Corpus
from photocorpus.importing import import_folder
from photocorpus.sources.folder import detect_layout, iter_candidates
from photocorpus.sources.instagram import InstagramQuery, InstaloaderPosts, harvest_instagram
from photocorpus.sources.instagram_posts import post_media

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instany100k" / "images"


def bench_adapter(n: int) -> float:
    context = instaloader.InstaloaderContext(sleep=False, quiet=True)
    nodes = feed(1_000_000_000_000_000_000, n)
    start = time.perf_counter()
    for node in nodes:
        post_media(Post(context, node), "london")
    return n / (time.perf_counter() - start)


def bench_harvest(n: int, tmp: Path) -> float:
    fake = FakeInstagram({"london": feed(1_000_000_000_000_000_000, n)})
    corpus = Corpus.create(tmp / "harvest")
    with fake.installed():
        loader = offline_loader(write_session_file(tmp / "session-tester"))
        start = time.perf_counter()
        harvest_instagram(
            corpus, [InstagramQuery.hashtag("london")], InstaloaderPosts(loader), owner_lookup=False
        )
        elapsed = time.perf_counter() - start
    corpus.close()
    return n / elapsed


def write_folders(photos: list[Path], tmp: Path) -> tuple[Path, Path]:
    loader = instaloader.Instaloader(sleep=False, quiet=True)
    insta = tmp / "instaloader" / "#newyork"
    plain = tmp / "plain" / "newyork"
    insta.mkdir(parents=True)
    plain.mkdir(parents=True)
    for i, photo in enumerate(photos):
        node = post_node(photo.stem, taken_at=1_480_000_000 + i, caption=f"New York 🗽 &amp; me #nyc #p{i}")
        post = Post(loader.context, node)
        base = str(insta / loader.format_filename(post, target="#newyork"))
        loader.save_metadata_json(base, post)
        loader.save_caption(base, post.date_local, post.caption)
        shutil.copy(photo, base + ".jpg")
        shutil.copy(photo, plain / photo.name)
    return insta.parent, plain.parent


def bench_import(src: Path, tmp: Path, name: str, workers: int) -> tuple[str, float, float]:
    start = time.perf_counter()
    layout = detect_layout(src)
    listed = sum(1 for _ in iter_candidates(src, layout))
    listing = time.perf_counter() - start
    corpus = Corpus.create(tmp / name)
    start = time.perf_counter()
    report = import_folder(corpus, src, workers=workers)
    elapsed = time.perf_counter() - start
    assert report.imported == listed, (report, listed)
    corpus.close()
    return layout, listing, report.imported / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=3007)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    photos = sorted(DATA.glob("*.jpg"))[: args.posts]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        print(f"adapter: {bench_adapter(10_000):,.0f} posts/s (post_media on real instaloader Posts)")
        print(f"harvest overhead: {bench_harvest(3_000, tmp):,.0f} posts/s (no latency, commit every 12)")
        start = time.perf_counter()
        insta, plain = write_folders(photos, tmp)
        print(f"wrote {len(photos)} posts with instaloader's writers in {time.perf_counter() - start:.1f} s")
        rows = [bench_import(insta, tmp, "a", args.workers), bench_import(plain, tmp, "b", args.workers)]
        for layout, listing, rate in rows:
            print(f"import {layout:12s}: listing {listing:5.2f} s, import {rate:7,.0f} photos/s")
        print(f"instaloader / plain import time: {rows[1][2] / rows[0][2]:.2f}x")


if __name__ == "__main__":
    main()
