"""Feature sets in and out of a corpus: ``.npz`` for any tool, and the MIRFLICKR-1M ``.dat`` tree.

* :func:`export_npz` writes ``source_id`` (strings), ``source`` (strings), ``photo_id`` (int64) and
  ``features`` (float32, one row per photo, in the set's row order). It streams the float32 matrix
  into the zip chunk by chunk, so exporting a million-row float16 set never needs the float32 copy
  in memory. ``np.load(path)`` reads it without ``allow_pickle``.
* :func:`import_mirflickr` loads a tree of s16a ``.dat`` files (``NN/<id>.dat``, see
  :mod:`photocorpus.features.mirflickr_dat`) as two feature sets, ``<prefix>.fc7`` and
  ``<prefix>.fc8``, stored as float32 by default so that an import/export round trip is bit-exact.
  Files are matched to photos by our own ``index.csv`` when present, else by MIRFLICKR number:
  ``10/103169.dat`` is the photo with source id ``103169`` (``mirflickr`` source, which the folder
  import gives both MIRFLICKR-25K and MIRFLICKR-1M photos, or a plain-folder import of the 1M's
  ``images/`` tree made before that layout was recognised). ``p<id>`` files of our own export need
  their ``index.csv``: a catalog id means nothing in another corpus. Malformed files are refused one
  by one with the reader's message; they never stop the import.
* :func:`export_mirflickr` writes any two sets (default: ``efficientnet-lite0`` as "fc7" and its
  logits as "fc8") in that layout, with our dims in the headers, plus ``index.csv`` mapping each file
  to its photo. Files are named by :func:`photocorpus.mirflickr_chunks.exchange_name`, the rule the
  image and JSON exports share: MIRFLICKR photo ``N`` is ``<N // 10000>/<N>.dat`` (beside the original
  ``<N // 10000>/<N>.jpg``), any other photo ``<id // 10000>/p<id>.dat`` by catalog id, photo by photo,
  so a corpus mixing both keeps the MIRFLICKR numbering of its MIRFLICKR photos.
  The index's text cells (source ids come from the source: an Instagram shortcode may start with ``-``)
  go through :func:`photocorpus.textsafety.csv_safe_cell`, so the file is safe to open in a
  spreadsheet, and :func:`import_mirflickr` restores them when it reads the index back.
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photocorpus import feature_store
from photocorpus.corpus_files import atomic_path
from photocorpus.errors import PhotocorpusError
from photocorpus.features.mirflickr_dat import DatFormatError, iter_dat_dir, read_dat, write_dat
from photocorpus.mirflickr_chunks import MIRFLICKR_SOURCE, exchange_name, mirflickr_number
from photocorpus.textsafety import csv_safe_row, restore_csv_cell

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus
    from photocorpus.interrupt import StopFlag

__all__ = [
    "INDEX_FILE",
    "ExchangeError",
    "MirflickrExportReport",
    "MirflickrImportReport",
    "export_mirflickr",
    "export_npz",
    "import_mirflickr",
]

INDEX_FILE = "index.csv"
MAX_REFUSALS_KEPT = 50
_NUMBER = re.compile(r"^\d+$")


class ExchangeError(PhotocorpusError):
    """An export or import cannot proceed (missing set, mismatched dims, unwritable destination)."""


# ------------------------------------------------------------------------------------------ helpers
def _photo_keys(corpus: Corpus, ids: np.ndarray) -> dict[int, tuple[str, str]]:
    """``photo_id -> (source, source_id)`` for the ids still in the catalog."""
    rows = corpus.select_in("SELECT id, source, source_id FROM photos WHERE id IN ({marks})", ids.tolist())
    return {int(r[0]): (r[1], r[2]) for r in rows}


def _write_npy_stream(
    zf: zipfile.ZipFile, name: str, blocks: Iterator[np.ndarray], shape: tuple, descr: str
) -> None:
    """Write one ``.npy`` member from row blocks, never holding the whole array."""
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array_header_2_0(fh, {"descr": descr, "fortran_order": False, "shape": shape})
        for block in blocks:
            fh.write(np.ascontiguousarray(block, dtype=np.dtype(descr)).tobytes())


def _write_npy(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)


# ---------------------------------------------------------------------------------------------- npz
def export_npz(corpus: Corpus, name: str, out: str | os.PathLike[str], *, chunk_rows: int = 65_536) -> int:
    """Write a feature set as ``.npz`` (see the module docstring); returns the number of rows.

    Rows of photos no longer in the catalog are left out. Written to a temporary file and renamed,
    so an interrupted export never leaves a truncated archive under the requested name.
    """
    fs = feature_store.open_feature_set(corpus, name)
    ids = fs.photo_ids()
    keys = _photo_keys(corpus, ids)
    keep = np.array([int(i) in keys for i in ids], dtype=bool)
    kept_ids = ids[keep]
    matrix = fs.matrix()
    rows = np.flatnonzero(keep)
    dest = Path(out).expanduser()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExchangeError(f"cannot write {dest}: {exc.strerror or exc}") from exc

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, len(rows), chunk_rows):
            sel = rows[start : start + chunk_rows]
            block = (
                matrix[sel[0] : sel[-1] + 1] if len(sel) and sel[-1] - sel[0] + 1 == len(sel) else matrix[sel]
            )
            yield np.asarray(block, dtype=np.float32)

    with (
        atomic_path(dest) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf,
    ):
        _write_npy(zf, "source_id", np.array([keys[int(i)][1] for i in kept_ids], dtype=str))
        _write_npy(zf, "source", np.array([keys[int(i)][0] for i in kept_ids], dtype=str))
        _write_npy(zf, "photo_id", kept_ids.astype(np.int64))
        _write_npy_stream(zf, "features", blocks(), (len(kept_ids), fs.dims), "<f4")
    return len(kept_ids)


# ------------------------------------------------------------------------------------ MIRFLICKR import
@dataclass
class MirflickrImportReport:
    files: int = 0
    imported: int = 0
    already: int = 0
    unmatched: int = 0
    refused: int = 0
    refusals: list[str] = field(default_factory=list)  # the first MAX_REFUSALS_KEPT messages
    fc7_dim: int | None = None
    fc8_dim: int | None = None
    feature_sets: list[str] = field(default_factory=list)
    interrupted: bool = False

    def refuse(self, message: str) -> None:
        self.refused += 1
        if len(self.refusals) < MAX_REFUSALS_KEPT:
            self.refusals.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _read_index(root: Path) -> dict[str, tuple[str, str]]:
    """``relative id (NN/name) -> (source, source_id)`` from an index.csv we wrote, if present."""
    path = root / INDEX_FILE
    if not path.is_file():
        return {}
    out: dict[str, tuple[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            dat = (row.get("dat") or "").removesuffix(".dat")
            if dat and row.get("source") is not None and row.get("source_id") is not None:
                out[dat] = (restore_csv_cell(row["source"]), restore_csv_cell(row["source_id"]))
    return out


def _match_photo(corpus: Corpus, rel_id: str, index: dict[str, tuple[str, str]]) -> int | None:
    """The catalog photo a ``NN/<name>.dat`` file belongs to, or None."""
    candidates: list[tuple[str, str]] = []
    if rel_id in index:
        candidates.append(index[rel_id])
    chunk, _, stem = rel_id.partition("/")
    if _NUMBER.match(stem):
        number = str(int(stem))
        # A MIRFLICKR photo; else the same image imported as a plain folder before the MIRFLICKR-1M
        # layout was recognised (source id = its path under the import root, without extension).
        candidates += [
            (MIRFLICKR_SOURCE, number), ("folder", stem), ("folder", f"{chunk}/{stem}"),
            ("folder", f"images/{chunk}/{stem}"),
        ]  # fmt: skip
    for source, source_id in candidates:
        row = corpus.conn.execute(
            "SELECT id FROM photos WHERE source = ? AND source_id = ?", (source, source_id)
        ).fetchone()
        if row is not None:
            return int(row[0])
    return None


def import_mirflickr(
    corpus: Corpus,
    root: str | os.PathLike[str],
    *,
    prefix: str = "mirflickr",
    dtype: str = "float32",
    shard_rows: int = 4096,
    stop: StopFlag | None = None,
    advance: Callable[[int], None] | None = None,
) -> MirflickrImportReport:
    """Load a ``.dat`` tree as ``<prefix>.fc7`` and ``<prefix>.fc8``; resumable, see the module docstring."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ExchangeError(f"{base} is not a folder; pass the root of the NN/<id>.dat tree")
    if dtype not in feature_store.DTYPES:
        raise ExchangeError(f"dtype must be one of {', '.join(feature_store.DTYPES)}, not {dtype!r}")
    names = (f"{prefix}.fc7", f"{prefix}.fc8")
    report = MirflickrImportReport(feature_sets=list(names))
    index = _read_index(base)
    have = [set(feature_store.featurized_photo_ids(corpus, n)) for n in names]
    for name in names:
        if feature_store.has_feature_set(corpus, name):
            fs = feature_store.open_feature_set(corpus, name)
            if name.endswith("fc7"):
                report.fc7_dim = fs.dims
            else:
                report.fc8_dim = fs.dims
    ids: list[int] = []
    fc7s: list[np.ndarray] = []
    fc8s: list[np.ndarray] = []
    params = {"source": "MIRFLICKR s16a .dat files", "root": str(base)}

    def flush() -> None:
        if not ids:
            return
        with corpus.transaction():
            for name, rows, present in ((names[0], fc7s, have[0]), (names[1], fc8s, have[1])):
                new = [i for i, pid in enumerate(ids) if pid not in present]  # one row per photo per set
                if new:
                    feature_store.append_rows(
                        corpus, name, [ids[i] for i in new], np.stack([rows[i] for i in new]),
                        model_id="mirflickr-dat", dtype=dtype, params=params,
                    )  # fmt: skip
        for h in have:
            h.update(ids)
        report.imported += len(ids)
        ids.clear()
        fc7s.clear()
        fc8s.clear()

    seen: set[int] = set()
    for rel_id, path in iter_dat_dir(base):
        report.files += 1
        if advance:
            advance(1)
        photo = _match_photo(corpus, rel_id, index)
        if photo is None:
            report.unmatched += 1
            continue
        if (photo in have[0] and photo in have[1]) or photo in seen:
            report.already += 1
            continue
        try:
            fc7, fc8 = read_dat(path)
        except (DatFormatError, OSError) as exc:
            report.refuse(str(exc))
            continue
        if report.fc7_dim is None:
            report.fc7_dim, report.fc8_dim = len(fc7), len(fc8)
        if (len(fc7), len(fc8)) != (report.fc7_dim, report.fc8_dim):
            report.refuse(
                f"{path}: fc7/fc8 dims {len(fc7)}/{len(fc8)} differ from the set's "
                f"{report.fc7_dim}/{report.fc8_dim}"
            )
            continue
        seen.add(photo)
        ids.append(photo)
        fc7s.append(fc7)
        fc8s.append(fc8)
        if len(ids) >= shard_rows:
            flush()
        if stop:
            report.interrupted = True
            break
    flush()
    if not report.interrupted:
        for name in names:
            if (
                feature_store.has_feature_set(corpus, name)
                and len(feature_store.open_feature_set(corpus, name).shards) > 1
            ):
                feature_store.compact(corpus, name)
    return report


# ------------------------------------------------------------------------------------ MIRFLICKR export
@dataclass
class MirflickrExportReport:
    written: int = 0
    skipped: int = 0  # photos with a row in only one of the two sets, or gone from the catalog
    naming: str = ""
    fc7_dim: int = 0
    fc8_dim: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_mirflickr(
    corpus: Corpus,
    out_dir: str | os.PathLike[str],
    *,
    fc7_set: str = "efficientnet-lite0",
    fc8_set: str = "efficientnet-lite0.logits",
    advance: Callable[[int], None] | None = None,
) -> MirflickrExportReport:
    """Write two sets as ``.dat`` files plus ``index.csv``; see the module docstring."""
    fc7 = feature_store.open_feature_set(corpus, fc7_set)
    fc8 = feature_store.open_feature_set(corpus, fc8_set)
    ids7, ids8 = fc7.photo_ids(), fc8.photo_ids()
    both = np.intersect1d(ids7, ids8)
    keys = _photo_keys(corpus, both)
    photos = [int(i) for i in both if int(i) in keys]
    report = MirflickrExportReport(
        skipped=len(np.union1d(ids7, ids8)) - len(photos), fc7_dim=fc7.dims, fc8_dim=fc8.dims
    )
    numbered = sum(1 for p in photos if mirflickr_number(*keys[p]) is not None)
    if numbered == len(photos):
        report.naming = "mirflickr number"
    elif numbered == 0:
        report.naming = "catalog photo id (p<id>)"
    else:
        report.naming = f"mirflickr number ({numbered}), catalog photo id ({len(photos) - numbered})"
    base = Path(out_dir).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    rows7 = dict(zip(ids7.tolist(), range(len(ids7)), strict=True))
    rows8 = dict(zip(ids8.tolist(), range(len(ids8)), strict=True))
    m7, m8 = fc7.matrix(), fc8.matrix()
    index_rows: list[tuple[str, int, str, str]] = []
    for pid in photos:
        rel = exchange_name(keys[pid][0], keys[pid][1], pid).relpath("dat")
        write_dat(
            base / rel,
            np.asarray(m7[rows7[pid]], dtype=np.float32),
            np.asarray(m8[rows8[pid]], dtype=np.float32),
        )
        index_rows.append((rel, pid, keys[pid][0], keys[pid][1]))
        report.written += 1
        if advance:
            advance(1)
    with atomic_path(base / INDEX_FILE) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dat", "photo_id", "source", "source_id"])
        writer.writerows(csv_safe_row(row) for row in index_rows)
    return report
