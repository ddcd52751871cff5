"""Images in MIRFLICKR-1M's layout: ``<N // 10000>/<N>.jpg``, one folder per 10,000 photos.

The third tree of the MIRFLICKR exchange, beside the s16a JSON (``mirflickr-json``) and the ``.dat``
features (``features export-mirflickr``): the three name every photo by the same rule
(:mod:`photocorpus.mirflickr_chunks`), so ``10/103169.jpg``, ``10/103169.json`` and ``10/103169.dat`` are
one photo. Like the other two, and unlike the training layouts, it holds every photo that has an image,
curated or not (``--split`` narrows it): it is an exchange of the collection, not a training set.
Stored JPEGs are copied byte for byte unless a ``size`` is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from photocorpus.catalog_table import CatalogPhoto, iter_catalog_photos
from photocorpus.corpus import Corpus
from photocorpus.export.attribution import write_attribution
from photocorpus.export.rows import write_bytes
from photocorpus.export.training_folders import LayoutReport, images_in_order
from photocorpus.mirflickr_chunks import exchange_name


def export_mirflickr_images(
    corpus: Corpus,
    out_dir: Path,
    *,
    splits: set[str] | None = None,
    photo_ids: list[int] | None = None,
    size: tuple[int, int] | None = None,
    workers: int | None = None,
    embed_provenance: bool = False,
    advance: Callable[[int], None] | None = None,
) -> LayoutReport:
    """Write ``<chunk>/<name>.jpg`` for every photo with an image (in ``splits`` if given)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = list(iter_catalog_photos(corpus, splits=splits, photo_ids=photo_ids, with_file=True))
    report = LayoutReport()
    credits: list[tuple[CatalogPhoto, str]] = []
    for photo, data in images_in_order(corpus, photos, size, workers, provenance=embed_provenance):
        rel = exchange_name(photo.source, photo.source_id, photo.photo_id).relpath("jpg")
        write_bytes(out_dir / rel, data)
        credits.append((photo, rel))
        split = photo.split or "none"
        report.per_split[split] = report.per_split.get(split, 0) + 1
        report.images += 1
        if advance:
            advance(1)
    report.attributed = write_attribution(out_dir, credits)
    return report
