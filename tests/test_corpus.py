"""The catalog: schema, migrations, WAL, merging, stages, intents, status."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from photocorpus.catalog_schema import SCHEMA_VERSION
from photocorpus.config import Settings, load_settings
from photocorpus.corpus import Corpus, StoredFile
from photocorpus.errors import ConfigError, CorpusExistsError, CorpusNotFoundError, SchemaVersionError
from photocorpus.records import ImageURL, PhotoRecord, utc_iso


def test_create_makes_the_corpus_layout(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    for sub in ("images", "features", "reports", "exports"):
        assert (corpus.root / sub).is_dir()
    assert (corpus.root / "catalog.sqlite").is_file()
    assert corpus.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert corpus.schema_version == SCHEMA_VERSION
    corpus.close()
    with pytest.raises(CorpusExistsError):
        Corpus.create(tmp_path / "c")


def test_open_missing_corpus_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(CorpusNotFoundError, match="photocorpus init"):
        Corpus.open(tmp_path / "nothing")


def test_settings_file_lists_every_default_with_a_comment(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    text = (corpus.root / "corpus.toml").read_text()
    assert "[layout]" in text and "files_per_dir = 1000  # " in text
    assert "[import]" in text and "link = false  # " in text
    assert load_settings(corpus.root) == Settings()
    (corpus.root / "corpus.toml").write_text(text.replace("files_per_dir = 1000", "files_per_dir = 50"))
    assert load_settings(corpus.root).layout.files_per_dir == 50
    (corpus.root / "corpus.toml").write_text("[layout]\nfiles_per_dri = 3\n")
    with pytest.raises(ConfigError, match="files_per_dri"):
        load_settings(corpus.root)
    (corpus.root / "corpus.toml").write_text("[layout]\nfiles_per_dir = 0\n")
    with pytest.raises(ConfigError):
        load_settings(corpus.root)
    corpus.close()


def test_an_empty_catalog_is_migrated_forward(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    sqlite3.connect(root / "catalog.sqlite").close()  # user_version 0: a catalog from before schema 1
    corpus = Corpus.open(root)
    assert corpus.schema_version == SCHEMA_VERSION
    tables = {r[0] for r in corpus.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "photos",
        "photo_labels",
        "image_urls",
        "stages",
        "files",
        "harvest_log",
        "feature_sets",
    } <= tables
    corpus.close()


def test_a_newer_catalog_is_refused(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    corpus.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    corpus.close()
    with pytest.raises(SchemaVersionError, match="upgrade photocorpus"):
        Corpus.open(tmp_path / "c")


def test_add_photos_is_unique_per_source_and_merges_labels(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    rec = PhotoRecord(
        source="flickr",
        source_id="42",
        labels=["london"],
        title="Big Ben",
        tags=["clock", "tower"],
        lat=51.5,
        lon=-0.12,
        uploaded_at=utc_iso(1500000000),
        urls=[ImageURL("url_l", "https://example.org/l.jpg", 1024, 768)],
    )
    (first,) = corpus.add_photos([rec])
    again = PhotoRecord(source="flickr", source_id="42", labels=["clock"], title="changed")
    other = PhotoRecord(source="folder", source_id="42", labels=["london"])
    second, third = corpus.add_photos([again, other])
    assert first == second != third
    photo = corpus.photo(first)
    assert photo is not None
    assert photo["labels"] == ["clock", "london"]
    assert photo["primary_label"] == "london"
    assert photo["title"] == "Big Ben"  # first-seen metadata is kept
    assert photo["tags"] == ["clock", "tower"]
    assert photo["uploaded_at"] == "2017-07-14T02:40:00Z"
    assert photo["urls"][0]["width"] == 1024
    assert corpus.count_photos() == 2
    assert corpus.status_summary()["labels"] == {"london": 2, "clock": 1}
    corpus.close()


def test_label_sequence_numbers_are_dense_per_label(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos([PhotoRecord("folder", str(i), ["a" if i % 3 else "b"]) for i in range(9)])
    seqs = {
        label: [
            r[0]
            for r in corpus.conn.execute(
                "SELECT label_seq FROM photos WHERE primary_label = ? ORDER BY id", (label,)
            )
        ]
        for label in ("a", "b")
    }
    assert seqs == {"a": list(range(6)), "b": list(range(3))}
    assert len(ids) == 9
    corpus.close()


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    with pytest.raises(RuntimeError), corpus.transaction():
        corpus.add_photos([PhotoRecord("folder", "1", ["a"])])
        raise RuntimeError("boom")
    assert corpus.count_photos() == 0
    corpus.close()


def test_dangling_intents_delete_their_files(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    a, b = corpus.add_photos([PhotoRecord("folder", "a", ["x"]), PhotoRecord("folder", "b", ["x"])])
    for pid in (a, b):
        path = corpus.plan_image_path(pid, "JPEG")
        full = corpus.abs_path(path)
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(b"jpeg bytes")
        if pid == a:  # a is committed; b is what a kill -9 between rename and commit leaves behind
            corpus.commit_file(pid, StoredFile(path, "0" * 64, 1, 1, 10, "JPEG"))
    report = corpus.verify()
    assert report.dangling_intents == 1 and len(report.orphan_files) == 1
    assert corpus.resolve_dangling_intents() == 1
    report = corpus.verify()
    assert report.ok, report
    assert corpus.photo(a)["file"]["path"].endswith("/a.jpg")
    assert corpus.photo(b)["file"] is None
    corpus.close()


def test_stage_attempts_are_counted_and_reasons_summarised(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos([PhotoRecord("folder", str(i), ["a"]) for i in range(3)])
    corpus.set_stage(ids[0], "fetch", "failed", "http_404")
    corpus.set_stage(ids[0], "fetch", "failed", "http_404")
    corpus.set_stage(ids[1], "fetch", "failed", "timeout")
    corpus.set_stage(ids[2], "fetch", "done")
    corpus.bump_counter("harvest", "retries", 3)
    corpus.bump_counter("harvest", "retries", 2)
    attempts = corpus.conn.execute("SELECT attempts FROM stages WHERE photo_id = ?", (ids[0],)).fetchone()[0]
    assert attempts == 2
    summary = corpus.status_summary()
    assert summary["stages"] == {"fetch": {"failed": 2, "done": 1}}
    assert summary["failures"] == {"http_404": 1, "timeout": 1}
    assert summary["counters"] == {"harvest": {"retries": 5}}
    with pytest.raises(ValueError, match="unknown stage status"):
        corpus.set_stage(ids[0], "fetch", "maybe")
    corpus.close()


def test_busy_catalog_gives_a_clear_error(tmp_path: Path) -> None:
    from photocorpus import corpus as corpus_module
    from photocorpus.errors import CorpusBusyError

    a = Corpus.create(tmp_path / "c")
    b = Corpus.open(tmp_path / "c")
    # every connection waits for a busy writer (BUSY_TIMEOUT_S) before giving up, and reads from WAL
    # so that readers never wait for writers
    assert b.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
    assert b.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    b.conn.execute("PRAGMA busy_timeout = 100")
    with (
        a.transaction(),
        pytest.raises(CorpusBusyError, match="another photocorpus process"),
        b.transaction(),
    ):
        pass
    # Once the first writer is done, the second one proceeds.
    with b.transaction():
        b.add_photos([PhotoRecord("folder", "1", ["a"])])
    assert a.count_photos() == 1
    assert corpus_module.BUSY_TIMEOUT_S >= 10  # writers wait a while before giving up
    a.close()
    b.close()


def test_utc_iso_normalises_timestamps() -> None:
    assert utc_iso("1500000000") == "2017-07-14T02:40:00Z"
    assert utc_iso("2017-07-14 04:40:00+02:00") == "2017-07-14T02:40:00Z"
    assert utc_iso("2017-07-14T02:40:00") == "2017-07-14T02:40:00Z"
    assert utc_iso("not a date") is None
    assert utc_iso(None) is None


def test_lookups_by_many_ids_are_asked_in_chunks(tmp_path: Path) -> None:
    """2,500 ids is more than SQLite's old 999-parameter cap: every batched lookup still answers for
    all of them (``file_paths`` once put them all in one statement), with its extra parameters."""
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos([PhotoRecord("t", f"s{i}", ["x"]) for i in range(2500)])
    corpus.set_stages(ids[::2], "fetch", "done")
    assert set(corpus.stage_status(ids, "fetch")) == set(ids[::2])
    sql = "SELECT id FROM photos WHERE source = ? AND id IN ({marks})"
    assert sorted(r[0] for r in corpus.select_in(sql, ids, ("t",), chunk=900)) == sorted(ids)
    assert list(corpus.select_in(sql, ids, ("other",))) == []
    assert len(corpus.photo_ids("t", [f"s{i}" for i in range(2500)])) == 2500
    assert corpus.file_paths(ids) == {}
    with corpus.transaction() as conn:
        conn.executemany(
            "INSERT INTO files (photo_id, path, sha256, width, height, bytes, format, stored_at) "
            "VALUES (?, ?, ?, 1, 1, 1, 'JPEG', '2026-01-01T00:00:00Z')",
            [(pid, f"images/x/{pid}.jpg", "0" * 64) for pid in ids],
        )
    assert len(corpus.file_paths(ids)) == 2500
