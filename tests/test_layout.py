"""Layout: hostile ids and labels always give safe, distinct paths inside the corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from photocorpus import corpus_paths
from photocorpus.corpus import Corpus
from photocorpus.errors import UnsafePathError
from photocorpus.records import PhotoRecord

HOSTILE = [
    "../x",
    "../../etc/passwd",
    "a/b",
    "a\\b",
    "con",
    "CON",
    "nul.txt",
    "lpt1",
    ".hidden",
    "..",
    ".",
    "",
    " ",
    "Ünïcödé-名前-😀",
    "x" * 300,
    "/abs/path",
    "a_b",
    "name\x00with-nul",
    "tab\tand\nnewline",
]
SAFE_CHARS = re.compile(r"^[a-z0-9._-]+$")


@pytest.mark.parametrize("text", HOSTILE)
def test_safe_component_is_one_safe_name(text: str) -> None:
    name = corpus_paths.safe_component(text)
    assert SAFE_CHARS.match(name), name
    assert not name.startswith(".")
    assert "/" not in name and "\\" not in name
    assert len(name) <= corpus_paths.MAX_COMPONENT_LEN
    assert name.split(".")[0] not in {"con", "nul", "lpt1", "prn", "aux"}


def test_safe_component_keeps_distinct_inputs_apart() -> None:
    names = [corpus_paths.safe_component(t) for t in HOSTILE if t not in ("",)]
    assert len(set(names)) == len(names)
    # Case-folding must not merge names on case-insensitive disks.
    assert corpus_paths.safe_component("Cat") != corpus_paths.safe_component("cat")
    # Long names that share a prefix stay apart.
    assert corpus_paths.safe_component("y" * 300 + "1") != corpus_paths.safe_component("y" * 300 + "2")


def test_plain_ids_are_kept_readable() -> None:
    assert corpus_paths.safe_component("1480880010192837119") == "1480880010192837119"
    assert corpus_paths.safe_component("newyork") == "newyork"


def test_chunked_paths_hold_at_most_files_per_dir() -> None:
    paths = [corpus_paths.image_relpath("london", seq, str(seq), "JPEG", 1000) for seq in range(2500)]
    folders: dict[str, int] = {}
    for p in paths:
        folder = p.rsplit("/", 1)[0]
        folders[folder] = folders.get(folder, 0) + 1
    assert folders == {"images/london/00000": 1000, "images/london/00001": 1000, "images/london/00002": 500}


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "images/../../x", "", "."])
def test_resolve_inside_refuses_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        corpus_paths.resolve_inside(tmp_path, bad)


def test_resolve_inside_refuses_symlink_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "images").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        corpus_paths.resolve_inside(root, "images/x.jpg")


def test_resolving_many_paths_gives_each_path_what_resolve_inside_gives(tmp_path: Path) -> None:
    """The batch resolver resolves a folder once, so its shortcut must not skip any symlink: file
    links inside and outside, a folder linked outside, missing files, and malformed paths."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    root = tmp_path / "corpus"
    (root / "images" / "a" / "00000").mkdir(parents=True)
    (root / "images" / "a" / "00000" / "1.jpg").write_bytes(b"x")
    (root / "images" / "a" / "00000" / "inside.jpg").symlink_to(root / "images" / "a" / "00000" / "1.jpg")
    (root / "images" / "a" / "00000" / "out.jpg").symlink_to(outside / "secret.jpg")
    (root / "images" / "b").symlink_to(outside)
    (root / "images" / "c").symlink_to(root / "images" / "a")
    paths = [
        "images/a/00000/1.jpg", "images/a/00000/missing.jpg", "images/a/00000/inside.jpg",
        "images/a/00000/out.jpg", "images/b/secret.jpg", "images/c/00000/1.jpg", "images/a/00000/.",
        "images", "images/a/../b/secret.jpg", "/etc/passwd", "images//a", "",
    ]  # fmt: skip
    for rel in paths:
        try:
            expected: Path | type[UnsafePathError] = corpus_paths.resolve_inside(root, rel)
        except UnsafePathError:
            expected = UnsafePathError
        # alone, and after its folder was resolved for another path of the same call
        for batch in ([rel], ["images/a/00000/1.jpg", "images/c/00000/1.jpg", rel]):
            if expected is UnsafePathError:
                with pytest.raises(UnsafePathError):
                    corpus_paths.resolve_many_inside(root, batch)
            else:
                assert corpus_paths.resolve_many_inside(root, batch)[-1] == expected, rel
    assert corpus_paths.resolve_many_inside(root, ["images/c/00000/1.jpg"]) == [
        (root / "images/a/00000/1.jpg").resolve()
    ]


def test_hostile_records_get_paths_inside_the_corpus(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    records = [PhotoRecord(source="flickr", source_id=t or "empty", labels=[t or "empty"]) for t in HOSTILE]
    ids = corpus.add_photos(records)
    paths = [corpus.plan_image_path(pid, "JPEG") for pid in ids]
    assert len(set(paths)) == len(paths)
    root = corpus.root.resolve()
    for rel in paths:
        full = corpus.abs_path(rel)
        assert root in full.parents
        parts = rel.split("/")
        assert parts[0] == "images" and len(parts) == 4
        assert all(SAFE_CHARS.match(p) for p in parts)
        # Writing there creates no folder outside images/<label>/<chunk>/.
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(b"x")
    created = {p.relative_to(root).parts[0] for p in root.rglob("*")}
    assert created <= {
        "images",
        "features",
        "reports",
        "exports",
        "corpus.toml",
        "catalog.sqlite",
        "catalog.sqlite-wal",
        "catalog.sqlite-shm",
    }
    corpus.close()


def test_same_id_from_two_sources_under_one_label_gets_two_paths(tmp_path: Path) -> None:
    corpus = Corpus.create(tmp_path / "c")
    a, b = corpus.add_photos([PhotoRecord("flickr", "123", ["x"]), PhotoRecord("folder", "123", ["x"])])
    # Same label, same chunk folder, same sanitized id: the second owner must not overwrite the first.
    pa = corpus.plan_image_path(a, "JPEG")
    pb = corpus.plan_image_path(b, "JPEG")
    assert pa != pb
    corpus.close()
