"""MIRFLICKR-1M-s16a-style metadata: one JSON file per photo, in chunk folders of 10,000.

The s16a extension "is provided as individual JSON files ... in chunks of 10,000 files. Each file is
named according to the corresponding photo JPG". Here chunk ``k`` (folder ``<k>/``) holds the k-th
10,000 photos in catalog order, and each file is ``<k>/<id>.json`` with the same safe id the image
exports use, so metadata and images map one to one. Photos the enrich stage reached carry its kinds
(EXIF with each value's origin, comments, notes, albums, groups, views, the full description, tag
authors, and which kinds the source refused) under ``"enriched"``, as s16a's files did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from photocorpus.corpus import Corpus
from photocorpus.export.enriched import BATCH, enrichment_by_photo
from photocorpus.export.rows import ExportPhoto, UniqueNames, iter_photos, write_text

CHUNK = 10_000


def export_mirflickr_json(
    corpus: Corpus,
    out_dir: Path,
    *,
    splits: set[str] | None = None,
    chunk_size: int = CHUNK,
    advance: Callable[[int], None] | None = None,
) -> int:
    """Write ``<chunk>/<id>.json`` per photo; returns how many."""
    names = UniqueNames()
    count = 0
    batch: list[ExportPhoto] = []

    def flush() -> None:
        nonlocal count
        enriched = enrichment_by_photo(corpus, [p.photo_id for p in batch])
        for photo in batch:
            folder = str(count // chunk_size)
            record = {**photo.metadata(), "path": photo.path}
            if photo.photo_id in enriched:
                record["enriched"] = enriched[photo.photo_id]
            text = json.dumps(record, ensure_ascii=False, indent=1, sort_keys=True)
            write_text(out_dir / folder / f"{names.stem(folder, photo)}.json", text + "\n")
            count += 1
        if advance:
            advance(len(batch))
        batch.clear()

    for photo in iter_photos(corpus, splits=splits):
        batch.append(photo)
        if len(batch) >= BATCH:
            flush()
    flush()
    return count
