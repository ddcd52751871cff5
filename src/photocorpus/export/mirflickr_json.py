"""MIRFLICKR-1M-s16a-style metadata: one JSON file per photo, in chunk folders of 10,000.

The s16a extension "is provided as individual JSON files ... in chunks of 10,000 files. Each file is
named according to the corresponding photo JPG". Here chunk ``k`` (folder ``<k>/``) holds the k-th
10,000 photos in catalog order, and each file is ``<k>/<id>.json`` with the same safe id the image
exports use, so metadata and images map one to one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from photocorpus.corpus import Corpus
from photocorpus.export.rows import UniqueNames, iter_photos, write_text

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
    for photo in iter_photos(corpus, splits=splits):
        folder = str(count // chunk_size)
        record = {**photo.metadata(), "path": photo.path}
        text = json.dumps(record, ensure_ascii=False, indent=1, sort_keys=True)
        write_text(out_dir / folder / f"{names.stem(folder, photo)}.json", text + "\n")
        count += 1
        if advance:
            advance(1)
    return count
