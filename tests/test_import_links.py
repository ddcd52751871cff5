"""Symlinks in an imported folder, and what ``import`` / ``import --link`` store for them (issue #23,
items 4 and 9c).

A hostile folder holds symlinks to a real JPEG and to a text file outside it. Neither is read unless
``--follow-symlinks`` is given; ``--link`` never stores a symlink (a hard link to the real file, or a
copy across devices), so ``verify`` is right to say ok and ``dedup`` can read every stored file.
``verify`` finds a symlink that got into ``images/`` some other way. A file refused as not an image
leaves its size and kind in the catalog, never its bytes.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from photocorpus import corpus_files
from photocorpus.corpus import Corpus
from photocorpus.curate.dedup import run_dedup
from photocorpus.fetch.imaging import probe_image, render_image
from photocorpus.fetch.spec import Geometry, RenderSpec
from photocorpus.importing import import_folder
from tests.conftest import run_cli

pytestmark = pytest.mark.reliability

SECRET = "root:x:0:0:SECRET-LINE-7f3a:/root:/bin/bash"


@pytest.fixture()
def hostile(instany_images: Path, tmp_path: Path) -> dict[str, Path]:
    """``src/nyc`` with three real photos, an inside symlink to one of them, and absolute symlinks
    to an outside JPEG, an outside text file (as an image and as a caption sidecar)."""
    jpegs = sorted(instany_images.glob("*.jpg"))
    src, outside = tmp_path / "src", tmp_path / "outside"
    (src / "nyc").mkdir(parents=True)
    outside.mkdir()
    for path in jpegs[:3]:
        shutil.copy(path, src / "nyc" / path.name)
    shutil.copy(jpegs[10], outside / "real.jpg")
    (outside / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    (src / "nyc" / "outside_photo.jpg").symlink_to(outside / "real.jpg")
    (src / "nyc" / "outside_text.jpg").symlink_to(outside / "secret.txt")
    (src / "nyc" / f"{jpegs[0].stem}.txt").symlink_to(outside / "secret.txt")  # a caption sidecar
    (src / "nyc" / "inside.jpg").symlink_to(src / "nyc" / jpegs[1].name)
    return {"src": src, "outside": outside, "corpus": tmp_path / "corpus"}


def _stages(corpus: Corpus) -> dict[str, tuple[str, str | None, str | None]]:
    rows = corpus.conn.execute(
        "SELECT p.source_id, s.status, s.reason, s.detail FROM stages s JOIN photos p ON p.id = s.photo_id"
    )
    return {r[0].rsplit("/", 1)[-1]: (r[1], r[2], r[3]) for r in rows}


def _symlinks_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_symlink()]


def _catalog_text(corpus: Corpus) -> str:
    corpus.conn.execute("PRAGMA wal_checkpoint(FULL)")
    return (corpus.root / "catalog.sqlite").read_bytes().decode("latin-1")


@pytest.mark.parametrize("link", [True, False], ids=["link", "copy"])
def test_symlinks_out_of_the_folder_are_refused_and_dedup_reads_every_stored_file(
    hostile: dict[str, Path], link: bool
) -> None:
    with Corpus.create(hostile["corpus"]) as corpus:
        report = import_folder(corpus, hostile["src"], link=link, workers=1)
        assert (report.imported, report.failed) == (4, 2)
        stages = _stages(corpus)
        for name in ("outside_photo", "outside_text"):
            assert stages[name][:2] == ("failed", "symlink_outside_source")
        assert stages["inside"][0] == "done"  # a link inside the folder is fine: its target is there
        assert _symlinks_under(corpus.root / "images") == []
        assert SECRET not in _catalog_text(corpus)  # neither the image nor the caption sidecar was read
        verified = corpus.verify()
        assert verified.ok, verified
        dedup = run_dedup(corpus, workers=1)  # used to fail: "refusing path ... resolves outside"
        assert dedup.hashed == 4


def test_follow_symlinks_links_the_real_file_and_keeps_no_byte_of_a_text_file(
    hostile: dict[str, Path],
) -> None:
    with Corpus.create(hostile["corpus"]) as corpus:
        report = import_folder(corpus, hostile["src"], link=True, follow_symlinks=True, workers=1)
        assert (report.imported, report.failed) == (5, 1)
        stored = corpus.photo(corpus.photo_ids("folder", ["nyc/outside_photo"])["nyc/outside_photo"])
        assert stored is not None and stored["file"] is not None
        path = corpus.root / stored["file"]["path"]
        assert not path.is_symlink()
        assert path.stat().st_ino == (hostile["outside"] / "real.jpg").stat().st_ino  # a hard link
        status, reason, detail = _stages(corpus)["outside_text"]
        assert (status, reason) == ("failed", "not_an_image")
        assert detail == f"{len(SECRET) + 1} bytes of text, no image signature"
        text = _catalog_text(corpus)
        assert "SECRET-LINE" not in text.replace(SECRET, "")  # only the opted-in caption holds it
        assert _symlinks_under(corpus.root / "images") == []
        assert corpus.verify().ok
        assert run_dedup(corpus, workers=1).hashed == 5


def test_link_into_links_the_real_file_or_copies_it_never_a_symlink(
    hostile: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Given a symlink, Linux's link() links the symlink itself; across devices (EXDEV) the old
    fallback stored a symlink. Both left a stored path that resolves outside the corpus."""
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    link = hostile["src"] / "nyc" / "outside_photo.jpg"
    assert corpus_files.link_into(link, dest_dir / "linked.jpg", dest_dir) == "hardlink"
    assert not (dest_dir / "linked.jpg").is_symlink()
    assert (dest_dir / "linked.jpg").stat().st_ino == (hostile["outside"] / "real.jpg").stat().st_ino

    def cross_device(src: object, dst: object, **kw: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    assert corpus_files.link_into(link, dest_dir / "copied.jpg", dest_dir) == "copy"
    assert not (dest_dir / "copied.jpg").is_symlink()
    assert (dest_dir / "copied.jpg").read_bytes() == (hostile["outside"] / "real.jpg").read_bytes()


def test_verify_finds_a_symlink_in_images_and_the_cli_lists_it(hostile: dict[str, Path]) -> None:
    """What the old --link left behind: a stored path that is a symlink leaving the corpus."""
    with Corpus.create(hostile["corpus"]) as corpus:
        import_folder(corpus, hostile["src"], workers=1)
        rel = corpus.conn.execute("SELECT path FROM files ORDER BY path LIMIT 1").fetchone()[0]
        stored = corpus.root / rel
        stored.unlink()
        stored.symlink_to(hostile["outside"] / "real.jpg")
        report = corpus.verify()
        assert report.unsafe_files == [rel] and not report.ok
    proc = run_cli("verify", "--corpus", str(hostile["corpus"]), check=False)
    assert proc.returncode == 1 and rel in proc.stdout, proc.stdout + proc.stderr
    assert "symlinks or paths outside the corpus: 1" in proc.stdout


def test_a_fifo_named_like_an_image_fails_instead_of_hanging(hostile: dict[str, Path]) -> None:
    os.mkfifo(hostile["src"] / "nyc" / "pipe.jpg")
    run_cli("init", str(hostile["corpus"]))
    proc = run_cli(
        "import", str(hostile["src"]), "--corpus", str(hostile["corpus"]), "--quiet", "--workers", "1",
        timeout=60,
    )  # fmt: skip
    assert "not_a_regular_file=1" in proc.stdout and "symlink_outside_source=2" in proc.stdout


@pytest.mark.parametrize(
    "data",
    [
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
        b"<html><body>token=SECRET-LINE-7f3a</body></html>",
        (SECRET + "\n").encode(),
    ],
    ids=["pem", "html", "passwd"],
)
def test_refusal_details_describe_the_bytes_without_quoting_them(data: bytes) -> None:
    """9c: the detail goes to stages.detail, status and exports; import and fetch share the rule."""
    spec = RenderSpec(Geometry(64, 64))
    for detail in (probe_image(data, 10**8).detail, render_image(data, spec).detail):
        assert detail, detail
        assert f"{len(data)} bytes of " in detail, detail
        for fragment in ("SECRET", "BEGIN", "b3Blbn", "root:x", "<html"):
            assert fragment not in detail, detail


@pytest.mark.parametrize("follow", [False, True], ids=["refused", "followed"])
def test_instalooter_metadata_symlinked_outside_is_not_read(
    instany_images: Path, tmp_path: Path, follow: bool
) -> None:
    """InstaLooter and instaloader JSON is read while listing, in the driver: the same rule holds there
    (a dump symlinked to a private JSON file would otherwise have its caption stored)."""
    import json

    from tests.test_instagram_support import post_node

    folder, outside = tmp_path / "looter" / "london", tmp_path / "outside"
    folder.mkdir(parents=True)
    outside.mkdir()
    photo = sorted(instany_images.glob("*.jpg"))[20]
    shutil.copy(photo, folder / photo.name)
    private = post_node(photo.stem, taken_at=1_480_000_000, caption=SECRET, username="me")
    (outside / "private.json").write_text(json.dumps(private), "utf-8")
    (folder / f"{photo.stem}.json").symlink_to(outside / "private.json")
    with Corpus.create(tmp_path / "corpus") as corpus:
        report = import_folder(corpus, folder.parent, follow_symlinks=follow)
        assert report.layout == "instalooter" and report.imported == 1
        row = corpus.conn.execute("SELECT caption, extra FROM photos").fetchone()
        if follow:
            assert row[0] == SECRET
        else:
            assert row[0] is None and SECRET not in _catalog_text(corpus)
            assert "a symlink outside the imported folder" in json.loads(row[1])["sidecar_warnings"][0]
