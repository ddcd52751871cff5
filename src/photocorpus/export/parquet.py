"""A Parquet metadata table: one row per photo (images stay where they are).

Columns include ``source``, ``source_id``, ``label``, ``caption`` (cleaned), ``duplicate_of`` (the
``source_id`` of the group's representative, or null), ``split`` (train/val/test, or null when
excluded), ``quality_flags`` (list of strings), ``width``, ``height`` and ``path`` (relative to the
corpus root, which is stored in the file's metadata as ``photocorpus.corpus_root``). The columns are
:func:`photocorpus.catalog_table.photo_schema`'s, the same as ``corpus.photos()``'s DataFrame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from photocorpus.catalog_table import iter_catalog_photos, photo_table
from photocorpus.corpus import Corpus


def export_parquet(
    corpus: Corpus,
    out_file: Path,
    *,
    splits: set[str] | None = None,
    photo_ids: list[int] | None = None,
    advance: Callable[[int], None] | None = None,
) -> int:
    """Write the table; returns the number of rows."""
    import pyarrow.parquet as pq

    table = photo_table(corpus, iter_catalog_photos(corpus, splits=splits, photo_ids=photo_ids), advance)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out_file)
    return table.num_rows
