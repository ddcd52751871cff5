"""Read and write MIRFLICKR-1M CNN feature files (the ``s16a`` ``.dat`` format).

The MIRFLICKR-1M feature release stores one file per image, in a tree chunked like the images
(``<N // 10000>/<N>.dat`` beside ``<N // 10000>/<N>.jpg``, see :mod:`photocorpus.mirflickr_chunks`).
Each file is two length-prefixed float vectors, fc8 first::

    int64  fc8_dim | float32[fc8_dim] | int64 fc7_dim | float32[fc7_dim]

in native byte order (the reference reader uses ``struct.unpack('=q', ...)``). Being able to read
them lets a user compare our features with the published ones; writing them lets our extracted
features be consumed by tools written for that release. Files are validated strictly (sane header
dims and exact size) because a silently misread file yields plausible-looking garbage vectors.

No torch import here: this is plain I/O used by the catalog and exporters.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from photocorpus.corpus_files import write_atomic

__all__ = ["MAX_DIM", "DatFormatError", "dat_size", "iter_dat_dir", "read_dat", "write_dat"]

MAX_DIM = 1_000_000  # far above any CNN layer; a larger header means a foreign or corrupt file
_INT = struct.Struct("=q")
_FLOAT = np.dtype("=f4")


class DatFormatError(ValueError):
    """A ``.dat`` file (or data to be written as one) does not follow the s16a layout."""


def dat_size(fc7_dim: int, fc8_dim: int) -> int:
    """Exact byte size of a file holding vectors of these lengths (20,400 for 4096 + 1000)."""
    return _INT.size + _FLOAT.itemsize * fc8_dim + _INT.size + _FLOAT.itemsize * fc7_dim


def _check_dim(path: Path, name: str, dim: int, offset: int) -> None:
    if not 0 < dim <= MAX_DIM:
        raise DatFormatError(
            f"{path}: {name} header at byte {offset} reads {dim}; expected a vector length in "
            f"1..{MAX_DIM} (wrong file type, corrupt file, or written with a different byte order?)"
        )


def read_dat(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(fc7, fc8)`` as float32 arrays (note the order differs from the on-disk order).

    Raises :class:`DatFormatError` naming the file and the mismatch when headers are implausible
    or the file size is not exactly what the headers imply (truncated or trailing data).
    """
    p = Path(path)
    data = p.read_bytes()
    total = len(data)
    if total < _INT.size:
        raise DatFormatError(f"{p}: file is {total} bytes; expected at least an 8-byte fc8 header")
    (fc8_dim,) = _INT.unpack_from(data, 0)
    _check_dim(p, "fc8 length", fc8_dim, 0)
    fc7_header_at = _INT.size + _FLOAT.itemsize * fc8_dim
    if total < fc7_header_at + _INT.size:
        raise DatFormatError(
            f"{p}: file is {total} bytes; fc8 header says {fc8_dim} floats, so expected at least "
            f"{fc7_header_at + _INT.size} bytes before the fc7 header ends (truncated?)"
        )
    (fc7_dim,) = _INT.unpack_from(data, fc7_header_at)
    _check_dim(p, "fc7 length", fc7_dim, fc7_header_at)
    expected = dat_size(fc7_dim, fc8_dim)
    if total != expected:
        what = "truncated" if total < expected else "trailing data"
        raise DatFormatError(
            f"{p}: file is {total} bytes but headers (fc8={fc8_dim}, fc7={fc7_dim}) imply exactly "
            f"{expected} bytes ({what})"
        )
    fc8 = np.frombuffer(data, dtype=_FLOAT, count=fc8_dim, offset=_INT.size)
    fc7 = np.frombuffer(data, dtype=_FLOAT, count=fc7_dim, offset=fc7_header_at + _INT.size)
    # astype copies into writable, native float32 arrays independent of the bytes buffer
    return fc7.astype(np.float32), fc8.astype(np.float32)


def _as_vector(p: Path, name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DatFormatError(f"{p}: {name} must be a 1-D vector, got shape {arr.shape}")
    if not 0 < arr.shape[0] <= MAX_DIM:
        raise DatFormatError(f"{p}: {name} has {arr.shape[0]} values; expected 1..{MAX_DIM}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DatFormatError(f"{p}: {name} must be floating point, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=_FLOAT)


def write_dat(path: str | os.PathLike[str], fc7: np.ndarray, fc8: np.ndarray) -> None:
    """Write ``fc7``/``fc8`` (cast to float32) in s16a layout, atomically.

    Written to a temp file in the same folder and renamed into place, so that an interrupted
    extraction never leaves a half-written file that a later ``read_dat`` would have to reject.
    Parent folders are created as needed.
    """
    p = Path(path)
    v7 = _as_vector(p, "fc7", fc7)
    v8 = _as_vector(p, "fc8", fc8)
    payload = b"".join((_INT.pack(v8.shape[0]), v8.tobytes(), _INT.pack(v7.shape[0]), v7.tobytes()))
    # One file per photo of an export that a re-run writes again: atomic, without an fsync each.
    write_atomic(p, payload, fsync=False)


def iter_dat_dir(root: str | os.PathLike[str]) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative_id, path)`` such as ``("10/103169", Path(".../10/103169.dat"))``.

    Walks the chunked ``NN/<id>.dat`` tree one level deep, sorted numerically where names are
    numbers, so iteration order is stable across file systems. Hidden and temporary files (our own
    in-progress writes start with a dot) are skipped.
    """
    base = Path(root)
    if not base.is_dir():
        raise NotADirectoryError(f"{base}: not a directory of MIRFLICKR .dat chunks")

    def order(entry: Path) -> tuple[int, int | str]:
        stem = entry.stem if entry.is_file() else entry.name
        return (0, int(stem)) if stem.isdigit() else (1, stem)

    for chunk in sorted((d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")), key=order):
        files = (f for f in chunk.iterdir() if f.suffix == ".dat" and not f.name.startswith("."))
        for f in sorted((f for f in files if f.is_file()), key=order):
            yield f"{chunk.name}/{f.stem}", f
