"""Putting files into a corpus atomically.

Every stored image is written to the corpus's scratch folder, fsynced, then renamed into place, so a
file under ``images/`` is always complete. Rename is atomic on one file system; the scratch folder lives
inside the corpus for exactly that reason.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from photocorpus.errors import StorageError


def write_tmp(tmp_dir: Path, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to a new file in ``tmp_dir`` and return its path."""
    path = tmp_dir / f"{uuid.uuid4().hex}.part"
    try:
        with open(path, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise _storage_error(exc, path) from exc
    return path


def place(tmp_file: Path, dest: Path) -> None:
    """Rename a finished scratch file to its final place, creating folders as needed."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_file, dest)
    except OSError as exc:
        raise _storage_error(exc, dest) from exc


def link_into(src: Path, dest: Path, tmp_dir: Path) -> str:
    """Hard-link ``src`` at ``dest`` (symlink if on another device); return ``"hardlink"``/``"symlink"``.

    The link is made under a scratch name and renamed, so ``dest`` appears atomically too.
    """
    tmp = tmp_dir / f"{uuid.uuid4().hex}.link"
    kind = "hardlink"
    try:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            os.symlink(src.resolve(), tmp)
            kind = "symlink"
        place(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _storage_error(exc, dest) from exc
    return kind


def _storage_error(exc: OSError, path: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full; free some space and re-run the same command to resume"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "permission denied; fix the corpus folder's permissions and re-run to resume"
    else:
        hint = "re-run the same command to resume once the cause is fixed"
    return StorageError(f"cannot write {path}: {exc.strerror or exc} ({hint})")
