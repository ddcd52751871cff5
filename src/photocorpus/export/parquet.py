"""A Parquet metadata table: one row per photo (images stay where they are).

Columns include ``source``, ``source_id``, ``label``, ``caption`` (cleaned), ``duplicate_of`` (the
``source_id`` of the group's representative, or null), ``split`` (train/val/test, or null when
excluded), ``quality_flags`` (list of strings), ``width``, ``height`` and ``path`` (relative to the
corpus root, which is stored in the file's metadata as ``photocorpus.corpus_root``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from photocorpus.corpus import Corpus
from photocorpus.export.rows import iter_photos


def _schema():  # type: ignore[no-untyped-def]  # pyarrow has no stubs
    import pyarrow as pa

    text, ints, flt = pa.string(), pa.int64(), pa.float64()
    return pa.schema(
        [
            ("photo_id", ints),
            ("source", text),
            ("source_id", text),
            ("label", text),
            ("labels", pa.list_(text)),
            ("caption", text),
            ("caption_raw", text),
            ("title", text),
            ("hashtags", pa.list_(text)),
            ("tags", pa.list_(text)),
            ("language", text),
            ("owner", text),
            ("owner_id", text),
            ("license", text),
            ("page_url", text),
            ("taken_at", text),
            ("uploaded_at", text),
            ("lat", flt),
            ("lon", flt),
            ("path", text),
            ("width", ints),
            ("height", ints),
            ("bytes", ints),
            ("sha256", text),
            ("phash", text),
            ("duplicate_of", text),
            ("dup_group", ints),
            ("bot", pa.bool_()),
            ("bot_reason", text),
            ("quality_flags", pa.list_(text)),
            ("quality_scores", text),  # JSON object: scores differ by version, so not a struct
            ("split", text),
            ("exclusion", text),
        ]
    )


def export_parquet(
    corpus: Corpus,
    out_file: Path,
    *,
    splits: set[str] | None = None,
    advance: Callable[[int], None] | None = None,
) -> int:
    """Write the table; returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    columns: dict[str, list] = {name: [] for name in schema.names}
    for photo in iter_photos(corpus, splits=splits):
        for name in schema.names:
            value = getattr(photo, name)
            if name == "quality_scores":
                value = json.dumps(value, sort_keys=True)
            columns[name].append(value)
        if advance:
            advance(1)
    table = pa.table(columns, schema=schema).replace_schema_metadata(
        {"photocorpus.corpus_root": str(corpus.root), "photocorpus.table": "photos"}
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out_file)
    return table.num_rows
