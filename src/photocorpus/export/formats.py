"""Every export format behind one function: :func:`export_format` picks the writer and counts.

The CLI's ``photocorpus export FORMAT DIR`` and ``pc.export_photos`` both call it, so a format is
added here once. The training layouts write only photos that are in a split and have a stored file;
``mirflickr-images`` every photo with a file (an exchange of the collection, not a training set); the
others describe every photo (``attribution``: the Creative Commons ones).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photocorpus.catalog_table import iter_catalog_photos

if TYPE_CHECKING:
    from photocorpus.corpus import Corpus

TRAINING_LAYOUTS = ("instacities", "imagefolder", "webdataset")  # photos in a split only
IMAGE_FORMATS = (*TRAINING_LAYOUTS, "mirflickr-images")
FORMATS = (*TRAINING_LAYOUTS, "parquet", "mirflickr-json", "mirflickr-images", "attribution")


def photos_to_export(
    corpus: Corpus, fmt: str, splits: set[str] | None, photo_ids: list[int] | None = None
) -> int:
    """How many photos ``fmt`` will write (a progress bar's total)."""
    photos = iter_catalog_photos(
        corpus,
        splits=splits,
        photo_ids=photo_ids,
        in_split_only=fmt in TRAINING_LAYOUTS,
        with_file=fmt in IMAGE_FORMATS,
    )
    return sum(1 for _ in photos)


def export_format(
    corpus: Corpus,
    fmt: str,
    out: Path,
    *,
    splits: set[str] | None = None,
    photo_ids: list[int] | None = None,
    size: tuple[int, int] | None = None,
    workers: int | None = None,
    embed_provenance: bool = False,
    advance: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the corpus as ``fmt`` to ``out`` (a folder; a file for parquet); return its counts."""
    advance = advance or (lambda n: None)
    if fmt in ("instacities", "imagefolder"):
        from photocorpus.export.training_folders import export_imagefolder, export_instacities

        writer = export_instacities if fmt == "instacities" else export_imagefolder
        r = writer(corpus, out, splits=splits, photo_ids=photo_ids, size=size, workers=workers,
                   embed_provenance=embed_provenance, advance=advance)  # fmt: skip
        return {"images": r.images, "per_split": r.per_split, "attributed": r.attributed}
    if fmt == "webdataset":
        from photocorpus.export.webdataset import export_webdataset

        w = export_webdataset(
            corpus, out, splits=splits, photo_ids=photo_ids, size=size, workers=workers,
            embed_provenance=embed_provenance, advance=advance,
        )  # fmt: skip
        return {"samples": w.samples, "shards": len(w.shards), "attributed": w.attributed}
    if fmt == "parquet":
        from photocorpus.export.parquet import export_parquet

        return {"rows": export_parquet(corpus, out, splits=splits, photo_ids=photo_ids, advance=advance)}
    if fmt == "mirflickr-json":
        from photocorpus.export.mirflickr_json import export_mirflickr_json

        files = export_mirflickr_json(corpus, out, splits=splits, photo_ids=photo_ids, advance=advance)
        return {"files": files}
    if fmt == "mirflickr-images":
        from photocorpus.export.mirflickr_images import export_mirflickr_images

        m = export_mirflickr_images(
            corpus, out, splits=splits, photo_ids=photo_ids, size=size, workers=workers,
            embed_provenance=embed_provenance, advance=advance,
        )  # fmt: skip
        return {"images": m.images, "per_split": m.per_split, "attributed": m.attributed}
    if fmt == "attribution":
        from photocorpus.export.attribution import write_attribution

        photos = [(p, p.path) for p in iter_catalog_photos(corpus, splits=splits, photo_ids=photo_ids)]
        advance(len(photos))
        return {"attributed": write_attribution(out, photos)}
    from photocorpus.export.rows import ExportError

    raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
