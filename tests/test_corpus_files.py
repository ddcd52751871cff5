"""The one atomic-write helper (issue #19): a file or folder is replaced whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from photocorpus.corpus_files import atomic_path, publish_dir, swap_dir, write_atomic


def test_write_atomic_replaces_the_file_and_leaves_no_scratch(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "index.json"
    write_atomic(dest, "one")
    write_atomic(dest, b"two")
    assert dest.read_text() == "two"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["index.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_scratch(tmp_path: Path) -> None:
    dest = tmp_path / "ids.npy"
    write_atomic(dest, b"old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("killed while writing")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.npy"]


def test_the_scratch_name_keeps_the_suffix_so_numpy_adds_none(tmp_path: Path) -> None:
    dest = tmp_path / "vectors.npy"
    with atomic_path(dest) as tmp:
        assert tmp.suffix == ".npy" and tmp.parent == tmp_path and tmp.name.startswith(".")
        np.save(tmp, np.arange(3))
    assert np.load(dest).tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.npy"]


def test_publish_dir_swaps_a_folder_and_swap_dir_hands_back_the_old_one(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    for version in ("v1", "v2"):
        new = tmp_path / f".staging-{version}"
        new.mkdir()
        (new / "weights").write_text(version)
        publish_dir(new, dest)
        assert (dest / "weights").read_text() == version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    new = tmp_path / ".staging-v3"
    new.mkdir()
    old = swap_dir(new, dest)
    assert old is not None and (old / "weights").read_text() == "v2" and not new.exists()
