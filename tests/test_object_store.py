"""Images on an object store through fsspec (``[storage] images_url``), tested with ``memory://``
(in-process) and ``file://`` (a folder outside the corpus, which worker processes can read too).

A corpus whose images live on a store must give the same catalog rows and the same bytes per path as
a local one; a crash between put and commit must leave nothing behind once the next run starts; every
reader (dedup, quality, featurize, export, thumbnails) must read from the store; ``verify`` must see
orphan and missing objects; and storage options must never show in the catalog, a repr or a message.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import uuid
from pathlib import Path

import pytest

from photocorpus.config import FetchSettings, Settings, StorageSettings, load_settings, write_settings
from photocorpus.corpus import Corpus
from photocorpus.corpus_files import image_input, open_image_bytes
from photocorpus.errors import ConfigError, StorageError, UnsafePathError
from photocorpus.fetch.stage import fetch_photos
from photocorpus.importing import import_folder
from photocorpus.object_store import OPTIONS_ENV, ObjectStore, RemoteImage, StorageOptions, check_relpath
from photocorpus.sources.urls import harvest_url_list
from tests.fixtures.image_server import ImageServer, Route
from tests.helpers import catalog_dump, files_on_disk

PHOTOS = 24
SECRET = "Sup3r-Secret-Value-0xC0FFEE"


def _settings(images_url: str = "", **options: object) -> Settings:
    # The file:// "buckets" here are folders outside the corpus: that takes the explicit opt-in.
    outside = images_url.startswith("file:")
    return Settings(
        storage=StorageSettings(images_url=images_url, options=dict(options), allow_outside_corpus=outside)
    )


def _fetch_settings(**kw: object) -> FetchSettings:
    return FetchSettings(allow_private_urls=True, host_rate_per_s=0, min_side_px=0, workers=2, **kw)


def _memory_url() -> str:
    return f"memory://pc-{uuid.uuid4().hex[:10]}/images"


def _store_files(corpus: Corpus) -> dict[str, str]:
    """{catalog path: sha256} of every object on the corpus's store."""
    store = corpus.image_store
    assert store is not None
    return {rel: hashlib.sha256(store.read(rel)).hexdigest() for rel in store.list_images()}


@pytest.fixture(scope="module")
def served(instany_images: Path, tmp_path_factory: pytest.TempPathFactory):
    """A URL list of real JPEGs served on 127.0.0.1."""
    paths = sorted(instany_images.glob("*.jpg"))[:PHOTOS]
    url_list = tmp_path_factory.mktemp("urls") / "urls.txt"
    with ImageServer() as server:
        server.record_hits = False
        url_list.write_text("".join(server.add(f"/{p.name}", Route(p.read_bytes())) + "\n" for p in paths))
        yield url_list


@pytest.fixture(scope="module")
def local_reference(served: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same photos fetched into an ordinary corpus (images in the corpus folder)."""
    root = tmp_path_factory.mktemp("local") / "corpus"
    with Corpus.create(root) as corpus:
        harvest_url_list(corpus, served)
        assert fetch_photos(corpus, _fetch_settings()).fetched == PHOTOS
    return root


def _fetch_into(root: Path, url_list: Path, images_url: str, **fetch: object) -> Corpus:
    corpus = Corpus.create(root, _settings(images_url))
    harvest_url_list(corpus, url_list)
    fetch_photos(corpus, _fetch_settings(**fetch))
    return corpus


# ---------------------------------------------------------------------------------------- writers
@pytest.mark.parametrize("kind", ["memory", "file"])
def test_fetch_into_a_store_gives_the_local_rows_and_bytes(
    kind: str, served: Path, local_reference: Path, tmp_path: Path
) -> None:
    url = _memory_url() if kind == "memory" else (tmp_path / "bucket" / "images").as_uri()
    with _fetch_into(tmp_path / "corpus", served, url) as corpus:
        assert catalog_dump(corpus.root) == catalog_dump(local_reference)
        assert _store_files(corpus) == files_on_disk(local_reference)
        assert not any((corpus.root / "images").rglob("*.jpg"))  # nothing landed in the corpus folder
        assert not any((corpus.root / ".tmp").rglob("*"))  # uploaded scratch copies are gone
        assert corpus.verify().ok
        # a re-run finds nothing to do and changes nothing
        assert fetch_photos(corpus, _fetch_settings()).fetched == 0
        assert catalog_dump(corpus.root) == catalog_dump(local_reference)


def test_crash_between_put_and_commit_leaves_no_orphan_object(
    served: Path, local_reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _memory_url()
    with Corpus.create(tmp_path / "corpus", _settings(url)) as corpus:
        harvest_url_list(corpus, served)

        def crash(*_a: object, **_k: object) -> None:
            raise RuntimeError("killed between put and commit")

        monkeypatch.setattr(Corpus, "commit_file", crash)
        with pytest.raises(RuntimeError, match="between put and commit"):
            fetch_photos(corpus, _fetch_settings(batch_size=8))
        monkeypatch.undo()
        put_before_crash = _store_files(corpus)
        assert put_before_crash, "the crash must come after at least one put"
        report = corpus.verify()
        assert report.dangling_intents >= len(put_before_crash)
        assert set(report.orphan_files) == set(put_before_crash)  # objects without rows, for now
        assert corpus.conn.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0

        # the next writer deletes every object of a dangling intent, then the run completes
        assert corpus.resolve_dangling_intents() >= len(put_before_crash)
        assert _store_files(corpus) == {}
        assert fetch_photos(corpus, _fetch_settings()).fetched == PHOTOS
        assert catalog_dump(corpus.root)["files"] == catalog_dump(local_reference)["files"]
        assert _store_files(corpus) == files_on_disk(local_reference)
        assert corpus.verify().ok


def test_ray_shard_puts_straight_at_the_reserved_keys(served: Path, tmp_path: Path) -> None:
    """The Ray task body, run in this process: it writes to the store, never to a scratch folder."""
    from photocorpus.fetch.committer import STORED_FORMAT
    from photocorpus.fetch.distributed import fetch_shard
    from photocorpus.fetch.plan import load_urls, pending_ids

    url = _memory_url()
    with Corpus.create(tmp_path / "corpus", _settings(url)) as corpus:
        harvest_url_list(corpus, served)
        ids = pending_ids(corpus, 0, 8, [])
        urls = load_urls(corpus, ids)
        with corpus.transaction():
            dests = {pid: corpus.plan_image_path(pid, STORED_FORMAT) for pid in ids}
        store = corpus.image_store
        assert store is not None
        shard = fetch_shard(_fetch_settings(), "/nonexistent", [(p, urls[p]) for p in ids], 1, store, dests)
        assert [o.result.stored_path for o in shard.outcomes if o.result] == [dests[p] for p in ids]
        assert all(o.result and o.result.tmp_path is None for o in shard.outcomes)
        assert set(_store_files(corpus)) == set(dests.values())
        with pytest.raises(ValueError, match="reserved path"):
            fetch_shard(_fetch_settings(), "", [(ids[0], urls[ids[0]])], 1, store, {})
        # the driver never committed: the intents make the next run remove the objects
        corpus.resolve_dangling_intents()
        assert _store_files(corpus) == {}


def test_import_into_a_store_matches_a_local_import(instany_images: Path, tmp_path: Path) -> None:
    src = tmp_path / "src" / "nyc"
    src.mkdir(parents=True)
    for p in sorted(instany_images.glob("*.jpg"))[:12]:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    with Corpus.create(tmp_path / "local") as local:
        import_folder(local, src.parent, workers=2)
    with Corpus.create(tmp_path / "remote", _settings(_memory_url())) as remote:
        report = import_folder(remote, src.parent, workers=2)
        assert report.imported == 12 and report.failed == 1
        local_dump, remote_dump = catalog_dump(local.root), catalog_dump(remote.root)
        assert remote_dump == local_dump
        assert _store_files(remote) == files_on_disk(local.root)
        assert remote.verify().ok
        with pytest.raises(ConfigError, match="link=True cannot link"):
            import_folder(remote, src.parent, link=True)


# ---------------------------------------------------------------------------------------- readers
def test_every_reader_reads_from_a_file_url_store(
    served: Path, local_reference: Path, tmp_path: Path
) -> None:
    """dedup, quality, featurize, export and thumbnails in worker processes, from a file:// store."""
    from photocorpus import feature_store
    from photocorpus.curate.dedup import run_dedup
    from photocorpus.curate.quality import run_quality
    from photocorpus.curate.splits import run_splits
    from photocorpus.explore.thumbs import ensure_thumbnails
    from photocorpus.export.training_folders import export_instacities
    from photocorpus.features.pipeline import featurize_images

    url = (tmp_path / "bucket" / "images").as_uri()
    results = {}
    for name, root, images_url in (("local", tmp_path / "local", ""), ("store", tmp_path / "store", url)):
        with _fetch_into(root, served, images_url) as corpus:
            dedup = run_dedup(corpus, workers=2)
            quality = run_quality(corpus, workers=2)
            run_splits(corpus)
            feats = featurize_images(corpus, "raw-pixels", workers=2)
            fs = feature_store.open_feature_set(corpus, "raw-pixels")
            ids = sorted(int(i) for i in fs.photo_ids())
            thumbs = ensure_thumbnails(corpus, ids, workers=2)
            out = root.parent / f"export-{name}"
            exported = export_instacities(corpus, out, size=(64, 64), workers=2)
            curation = corpus.conn.execute(
                "SELECT photo_id, phash, dhash, quality_scores, split FROM curation ORDER BY photo_id"
            ).fetchall()
            results[name] = {
                "hashed": dedup.hashed,
                "failed": (dedup.failed, quality.failed),
                "scored": quality.scored,
                "curation": [tuple(r) for r in curation],
                "features": feats.computed,
                "thumbs": (thumbs.made, sorted(thumbs.failed)),
                "thumb_bytes": {p: path.read_bytes() for p, path in thumbs.paths.items()},
                "export": {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.jpg"))},
                "n_exported": exported.images,
            }
    local, remote = results["local"], results["store"]
    assert remote["hashed"] == remote["scored"] == remote["features"] == PHOTOS
    assert remote["thumbs"] == (PHOTOS, [])
    assert remote["export"] and remote["n_exported"] == local["n_exported"]
    assert remote == local


def test_readers_in_process_from_memory_store(served: Path, tmp_path: Path) -> None:
    """The same readers with no worker processes, so memory:// (one process) serves them."""
    from photocorpus.curate.dedup import hash_photos
    from photocorpus.explore.thumbs import ensure_thumbnails

    with _fetch_into(tmp_path / "corpus", served, _memory_url()) as corpus:
        assert hash_photos(corpus, workers=1).failed == 0
        ids = [r[0] for r in corpus.conn.execute("SELECT photo_id FROM files ORDER BY 1")]
        thumbs = ensure_thumbnails(corpus, ids[:3], workers=1)
        assert thumbs.made == 3 and not thumbs.failed
        rel = corpus.conn.execute("SELECT path FROM files LIMIT 1").fetchone()[0]
        loc = corpus.image_location(rel)
        assert isinstance(loc, RemoteImage) and str(loc) == corpus.image_url(rel)
        assert open_image_bytes(loc) == image_input(loc) == corpus.image_store.read(rel)  # type: ignore[union-attr]


def test_local_locations_stay_plain_paths(tmp_path: Path) -> None:
    with Corpus.create(tmp_path / "c") as corpus:
        loc = corpus.image_location("images/a/00000/x.jpg")
        assert isinstance(loc, str) and loc == str(tmp_path / "c" / "images/a/00000/x.jpg")
        assert image_input(loc) is loc  # no copy on the local path: decoders open the file themselves
        assert corpus.image_store is None


# ---------------------------------------------------------------------------------------- verify
def test_verify_reports_orphan_and_missing_objects(served: Path, tmp_path: Path) -> None:
    with _fetch_into(tmp_path / "corpus", served, _memory_url()) as corpus:
        store = corpus.image_store
        assert store is not None and corpus.verify().ok
        victim = corpus.conn.execute("SELECT path FROM files ORDER BY photo_id LIMIT 1").fetchone()[0]
        store.delete(victim)
        store.put("images/stray/00000/orphan.jpg", b"left behind")
        report = corpus.verify()
        assert report.missing_files == [victim]
        assert report.orphan_files == ["images/stray/00000/orphan.jpg"]
        assert not report.ok


# ---------------------------------------------------------------------------------------- safety
def test_keys_never_leave_the_store() -> None:
    for bad in (
        "images/../x.jpg",
        "/images/a.jpg",
        "images//a.jpg",
        "features/a.npy",
        "images/a\\b.jpg",
        "images/s3://b/k.jpg",
        "images",
        "images/./a.jpg",
    ):
        with pytest.raises(UnsafePathError):
            check_relpath(bad)
    store = ObjectStore("memory://pc-guard/images")
    with pytest.raises(UnsafePathError):
        store.put("images/../../elsewhere.jpg", b"x")
    assert store.url_of("images/a/00000/1.jpg") == "memory://pc-guard/images/a/00000/1.jpg"
    with pytest.raises(StorageError, match="fsspec URL"):
        ObjectStore("bucket-without-scheme")


def test_browser_links_for_reports() -> None:
    rel = "images/nyc/00000/1 2.jpg"
    assert (
        ObjectStore("s3://bkt/pre").browser_url(rel) == "https://bkt.s3.amazonaws.com/pre/nyc/00000/1%202.jpg"
    )
    assert (
        ObjectStore("gs://bkt/pre").browser_url(rel)
        == "https://storage.googleapis.com/bkt/pre/nyc/00000/1%202.jpg"
    )
    custom = ObjectStore("s3://bkt/pre", StorageOptions({"client_kwargs": {"endpoint_url": "http://minio"}}))
    assert custom.browser_url(rel) is None
    assert ObjectStore("memory://bkt/pre").browser_url(rel) is None


def test_storage_options_never_show(
    served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(OPTIONS_ENV, f'{{"secret_token": "{SECRET}"}}')
    url = _memory_url()
    with _fetch_into(tmp_path / "corpus", served, url) as corpus:
        store = corpus.image_store
        assert store is not None and store.options.reveal() == {"secret_token": SECRET}
        assert SECRET not in repr(store) and SECRET not in repr(corpus.settings)
        conn = sqlite3.connect(corpus.root / "catalog.sqlite")
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        dump = "".join(repr(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)
        conn.close()
        assert url in dump or "images/" in dump
        assert SECRET not in dump
        assert SECRET not in (corpus.root / "corpus.toml").read_text()
        assert SECRET not in repr(corpus.status_summary())

        # a failing store: the message names the object, says what to do, and hides the secret
        def refuse(self: object, *args: object, **kw: object) -> None:
            raise PermissionError(f"AccessDenied for token {SECRET}")

        monkeypatch.setattr(type(store.fs), "pipe_file", refuse)
        with pytest.raises(StorageError) as caught:
            store.put("images/a/00000/1.jpg", b"x")
        message = str(caught.value)
        assert SECRET not in message and "***" in message and f"{url}/a/00000/1.jpg" in message
        assert caught.value.__cause__ is None and caught.value.__context__ is None  # nothing chained
    assert SECRET not in caplog.text
    # a storage library's own log line that quotes the credential is redacted by our log filter
    from photocorpus.logs import redact

    assert SECRET not in redact(f"botocore: signing with {SECRET}")

    # options in Settings are hidden from the repr too, and survive corpus.toml
    settings = _settings("s3://bucket/prefix", endpoint_url="http://127.0.0.1:9000", anon=True)
    assert "127.0.0.1" not in repr(settings)
    write_settings(tmp_path, settings)
    assert load_settings(tmp_path).storage.options == {"endpoint_url": "http://127.0.0.1:9000", "anon": True}


def test_bad_options_env_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(OPTIONS_ENV, f"not json {SECRET}")
    with Corpus.create(tmp_path / "c", _settings(_memory_url())) as corpus:
        with pytest.raises(StorageError) as caught:
            _ = corpus.image_store
        assert SECRET not in str(caught.value) and OPTIONS_ENV in str(caught.value)
        assert caught.value.__context__ is None


# ---------------------------------------------------------------------------------------- Ray
def test_ray_fetch_tasks_write_straight_to_the_store(
    served: Path, local_reference: Path, tmp_path: Path
) -> None:
    """Ray tasks put the JPEGs on a file:// store (no shared corpus folder needed); failures leave no
    intent; the rows and bytes are the local run's."""
    ray = pytest.importorskip("ray")
    from photocorpus.config import ExecutorSettings

    lines = served.read_text().splitlines()
    base = lines[0].rsplit("/", 1)[0]
    url_list = tmp_path / "urls.txt"
    url_list.write_text("\n".join([*lines, f"{base}/missing-1.jpg", f"{base}/missing-2.jpg"]) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            url = (tmp_path / "bucket" / "images").as_uri()
            with Corpus.create(tmp_path / "corpus", _settings(url)) as corpus:
                harvest_url_list(corpus, url_list)
                executor = ExecutorSettings(kind="ray", shard_size=5)
                report = fetch_photos(corpus, _fetch_settings(max_retries=0), executor=executor)
                assert report.executor == "ray" and report.fetched == PHOTOS and report.failed == 2
                dump = catalog_dump(corpus.root)
                assert dump["intents"] == []  # the failed photos' reserved paths were dropped
                assert dump["files"] == catalog_dump(local_reference)["files"]
                assert _store_files(corpus) == files_on_disk(local_reference)
                assert not any((corpus.root / "images").rglob("*.jpg"))
                assert corpus.verify().ok
        finally:
            ray.shutdown()
