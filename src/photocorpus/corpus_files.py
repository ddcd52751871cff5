"""Putting files into a corpus atomically, and reading stored images back wherever they live.

Every stored image is written to the corpus's scratch folder, fsynced, then renamed into place, so a
file under ``images/`` is always complete. Rename is atomic on one file system; the scratch folder lives
inside the corpus for exactly that reason. (Images on an object store are put at their final key
instead, see :mod:`photocorpus.object_store`; the readers below serve both.)
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

from photocorpus.errors import StorageError
from photocorpus.object_store import RemoteImage


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
        raise storage_error(exc, path) from exc
    return path


def place(tmp_file: Path, dest: Path) -> None:
    """Rename a finished scratch file to its final place, creating folders as needed."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_file, dest)
    except OSError as exc:
        raise storage_error(exc, dest) from exc


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """A fresh scratch path beside ``dest`` to write to; when the block ends, the file is moved over
    ``dest`` in one rename.

    So a reader (or the next run, after a kill -9) finds the old file or the whole new one, never a
    part: the file is fsynced before the rename and its folder after it (without the second fsync a
    crash can lose the rename itself). The scratch name is unique (two writers never share it) and
    keeps ``dest``'s suffix, so ``np.save`` adds none. If the block raises, the scratch file is
    removed and ``dest`` is untouched. Every file that photocorpus replaces in place goes through
    this, or through :func:`write_atomic`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.stem}.{uuid.uuid4().hex[:12]}.tmp{dest.suffix}")
    try:
        yield tmp
        if fsync:
            fsync_path(tmp)
        os.replace(tmp, dest)
        if fsync:
            fsync_path(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(dest: str | os.PathLike[str], data: bytes | str, *, fsync: bool = True) -> None:
    """Replace ``dest`` with ``data`` (text as UTF-8) atomically: see :func:`atomic_path`."""
    with atomic_path(dest, fsync=fsync) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a folder (a folder's entry list holds the result of a rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_dir(new: Path, dest: Path) -> Path | None:
    """Put the finished folder ``new`` at ``dest`` by rename; return where the old ``dest`` went.

    Two renames, so a reader sees the old folder or the new one, never a folder being written (a
    model, a report). The old one is moved aside, not deleted, because some callers must first
    commit the catalog rows that point at the new one (see ``learn.registry.save_model``); the
    caller removes it (:func:`publish_dir` does both).
    """
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(dest, old)
    os.replace(new, dest)
    fsync_path(dest.parent)
    return old


def publish_dir(new: Path, dest: Path) -> None:
    """:func:`swap_dir`, then the old folder removed."""
    old = swap_dir(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def link_into(src: Path, dest: Path, tmp_dir: Path) -> str:
    """Hard-link the regular file ``src`` names at ``dest``, or copy it where a hard link is impossible
    (another device, a file system without them); return ``"hardlink"`` or ``"copy"``.

    Never a symlink, and never a link *to* one: a stored symlink points outside the corpus, so every
    later stage refuses to read it ("resolves outside the corpus"). So ``src`` is resolved first and
    the link it gives is checked to be a regular file (Linux's ``link()`` links a symlink itself, not
    its target, whatever ``os.link``'s ``follow_symlinks`` says). The link is made under a scratch
    name and renamed, so ``dest`` appears atomically too.
    """
    tmp = tmp_dir / f"{uuid.uuid4().hex}.link"
    kind = "hardlink"
    try:
        target = src.resolve(strict=True)
        try:
            os.link(target, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            _copy_regular_file(target, tmp)
            kind = "copy"
        if not stat.S_ISREG(os.lstat(tmp).st_mode):  # the target was swapped for a link meanwhile
            raise OSError(errno.EINVAL, "not a regular file", str(src))
        place(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(exc, dest) from exc
    return kind


def _copy_regular_file(src: Path, dest: Path) -> None:
    """Copy ``src`` to the new file ``dest`` and fsync it; refuse anything but a regular file (a FIFO
    would block the copy forever, a device would never end)."""
    fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with open(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(src))
        with open(dest, "xb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())


def storage_error(exc: OSError, path: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full; free some space and re-run the same command to resume"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "permission denied; fix the corpus folder's permissions and re-run to resume"
    else:
        hint = "re-run the same command to resume once the cause is fixed"
    return StorageError(f"cannot write {path}: {exc.strerror or exc} ({hint})")


# ---------------------------------------------------------------------- reading stored images
# Where a worker finds a stored image: a local path (str), or an image on an object store.
ImageLocation: TypeAlias = str | RemoteImage


def open_image_bytes(location: str | os.PathLike[str] | RemoteImage) -> bytes:
    """The bytes of a stored image, from a local path or from an object store (see imagestore)."""
    if isinstance(location, RemoteImage):
        return location.read()
    with open(location, "rb") as fh:
        return fh.read()


def image_input(location: str | os.PathLike[str] | RemoteImage) -> str | bytes:
    """What a decoder should open: the local path itself (no copy: Pillow and libjpeg read the file,
    with draft-mode scaled decodes), or the bytes of an image on an object store."""
    if isinstance(location, RemoteImage):
        return location.read()
    return os.fspath(location)


def image_file(location: str | os.PathLike[str] | RemoteImage) -> str | io.BytesIO:
    """A path or file object for ``PIL.Image.open``: local files are opened by path, as before."""
    if isinstance(location, RemoteImage):
        return io.BytesIO(location.read())
    return os.fspath(location)
