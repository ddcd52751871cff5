"""Helpers shared by tests: comparable dumps of a corpus."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path


def catalog_dump(corpus_dir: Path) -> dict[str, list[tuple]]:
    """The catalog's content without wall-clock columns, for equality between two runs."""
    conn = sqlite3.connect(corpus_dir / "catalog.sqlite")
    try:
        return {
            "photos": conn.execute(
                "SELECT id, source, source_id, primary_label, label_seq, title, caption, tags, hashtags,"
                " owner, owner_id, lat, lon, geo_accuracy, license, taken_at, uploaded_at, page_url, extra"
                " FROM photos ORDER BY id"
            ).fetchall(),
            "labels": conn.execute("SELECT photo_id, label FROM photo_labels ORDER BY 1, 2").fetchall(),
            "stages": conn.execute(
                "SELECT photo_id, stage, status, reason FROM stages ORDER BY 1, 2"
            ).fetchall(),
            "files": conn.execute(
                "SELECT photo_id, path, sha256, width, height, bytes, format, origin FROM files ORDER BY 1"
            ).fetchall(),
            "intents": conn.execute("SELECT path FROM file_intents").fetchall(),
        }
    finally:
        conn.close()


def files_on_disk(corpus_dir: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under images/."""
    out = {}
    images = corpus_dir / "images"
    for dirpath, _dirs, names in os.walk(images):
        for name in names:
            path = Path(dirpath, name)
            out[path.relative_to(corpus_dir).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def process_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (Linux /proc: the state follows the name)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def child_pids(pid: int) -> set[int]:
    """Direct children of a process (Linux /proc: the parent pid is the 4th field of ``stat``)."""
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def exiftool_tags(jpeg: bytes) -> dict:
    """Every tag exiftool reads from ``jpeg`` (``-G1 -n``: ``XMP-dc:Title``, numbers as numbers), plus
    its warnings. exiftool is the second, independent XMP reader of the provenance tests (Pillow is the
    first); Debian's ``libimage-exiftool-perl``, installed by ``scripts/install-browser``."""
    import json
    import shutil
    import subprocess

    import pytest

    exiftool = shutil.which("exiftool")
    if exiftool is None:
        message = "exiftool is needed (Debian's libimage-exiftool-perl; scripts/install-browser installs it)"
        if os.environ.get("PHOTOCORPUS_REQUIRE_DATA") == "1" or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    proc = subprocess.run(
        [exiftool, "-j", "-G1", "-n", "-a", "-"], input=jpeg, capture_output=True, check=True, timeout=60
    )
    [tags] = json.loads(proc.stdout)
    return tags
