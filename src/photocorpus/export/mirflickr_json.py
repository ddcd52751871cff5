"""MIRFLICKR-1M-s16a-style metadata: one JSON file per photo, in chunk folders of 10,000.

The s16a extension "is provided as individual JSON files structured similarly to the original dataset
in chunks of 10,000 files. Each file is named according to the corresponding photo JPG". So photo ``N``
is ``<N // 10000>/<N>.json``, beside ``<N // 10000>/<N>.jpg`` in the ``mirflickr-images`` export and
``<N // 10000>/<N>.dat`` in ``features export-mirflickr``; photos that are not MIRFLICKR photos follow
the same rule by catalog id (``<id // 10000>/p<id>.json``, see :mod:`photocorpus.mirflickr_chunks`).

Each file carries the nine kinds the s16a page lists under the names it gives them
(:data:`photocorpus.s16a.SEED_FIELDS`: ``title``, ``description``, ``tags``, ``exif_data``,
``geo_information``, ``album_allocation``, ``user_comments``, ``notes``, ``group_allocation``), every
one present, plus the photo's other catalog fields and the enrich stage's extras (views, counts,
URLs, tag authors, and which kinds the source refused).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photocorpus.catalog_table import CatalogPhoto, iter_catalog_photos
from photocorpus.corpus import Corpus
from photocorpus.export.enriched import BATCH, enrichment_by_photo
from photocorpus.export.rows import write_text
from photocorpus.mirflickr_chunks import exchange_name
from photocorpus.s16a import s16a_fields

# Catalog fields the s16a names replace in these files: caption_raw is the description, lat/lon are
# geo_information. (The Parquet and WebDataset exports keep them under their own names.)
REPLACED = ("caption_raw", "lat", "lon")
# The enrich stage's entries that become s16a fields; the rest are written under their own names.
_ENRICHED_AS_S16A = ("exif", "albums", "groups", "comments", "notes", "description_full")


def _geo_accuracy(corpus: Corpus, photo_ids: list[int]) -> dict[int, int | None]:
    rows = corpus.select_in("SELECT id, geo_accuracy FROM photos WHERE id IN ({marks})", photo_ids)
    return {int(r[0]): r[1] for r in rows}


def mirflickr_record(
    photo: CatalogPhoto, enriched: dict[str, Any], geo_accuracy: int | None
) -> dict[str, Any]:
    """The JSON object written for one photo."""
    record: dict[str, Any] = {k: v for k, v in photo.metadata().items() if k not in REPLACED}
    record["path"] = photo.path
    record.update({k: v for k, v in enriched.items() if k not in _ENRICHED_AS_S16A})
    record.update(
        s16a_fields(
            title=photo.title,
            description=photo.caption_raw,
            tags=photo.tags,
            lat=photo.lat,
            lon=photo.lon,
            geo_accuracy=geo_accuracy,
            enriched=enriched,
        )
    )
    return record


def export_mirflickr_json(
    corpus: Corpus,
    out_dir: Path,
    *,
    splits: set[str] | None = None,
    photo_ids: list[int] | None = None,
    advance: Callable[[int], None] | None = None,
) -> int:
    """Write ``<chunk>/<name>.json`` per photo; returns how many."""
    count = 0
    batch: list[CatalogPhoto] = []

    def flush() -> None:
        nonlocal count
        if not batch:
            return
        ids = [p.photo_id for p in batch]
        enriched = enrichment_by_photo(corpus, ids)
        accuracy = _geo_accuracy(corpus, ids)
        for photo in batch:
            record = mirflickr_record(photo, enriched.get(photo.photo_id, {}), accuracy.get(photo.photo_id))
            text = json.dumps(record, ensure_ascii=False, indent=1, sort_keys=True)
            name = exchange_name(photo.source, photo.source_id, photo.photo_id)
            write_text(out_dir / name.relpath("json"), text + "\n")
            count += 1
        if advance:
            advance(len(batch))
        batch.clear()

    for photo in iter_catalog_photos(corpus, splits=splits, photo_ids=photo_ids):
        batch.append(photo)
        if len(batch) >= BATCH:
            flush()
    flush()
    return count
