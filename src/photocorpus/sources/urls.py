"""URL lists as a photo source: ``photocorpus harvest urls FILE``.

Reads the files that image-text datasets ship as, the same ones img2dataset reads, so an existing
dataset (LAION-style parquet, a CSV of URLs and captions, a plain list) can be fetched and curated by
photocorpus, and both tools can run on the same input:

* ``txt``: one URL per line (blank lines and ``#`` comments skipped);
* ``csv`` / ``tsv``: a header row, then one photo per row;
* ``json``: a list of objects, or one object of equal-length column lists;
* ``jsonl``: one object per line;
* ``parquet``: read in batches, so a multi-GB file is never held in memory;

each optionally gzip-compressed (``.gz``). The format comes from the extension unless given.

A photo's id is a hash of its URL: the same URL in two lists, or twice in one, is one photo (with
both labels). Other columns are kept in the photo's ``extra`` so nothing from the dataset is lost.
Rows whose URL is not http(s) are counted and skipped. Harvesting is resumable: each committed batch
is logged with the file's size and modification time, and a re-run of an unchanged file skips them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from photocorpus.caption_text import extract_hashtags
from photocorpus.corpus import Corpus
from photocorpus.errors import ImportSourceError, UntrustedJSONError
from photocorpus.notebook import HtmlReport
from photocorpus.records import ImageURL, PhotoRecord
from photocorpus.untrusted_json import loads_untrusted

SOURCE = "urls"
SIZE_KEY = "url"
URL_FORMATS = ("txt", "csv", "tsv", "json", "jsonl", "parquet")
MAX_EXTRA_COLUMNS = 50
MAX_EXTRA_TEXT = 1000
MAX_URL_LEN = 8192
# A jsonl row is a URL, a caption and a few columns (kilobytes); a line longer than this is not a row.
MAX_JSONL_LINE_CHARS = 16 * 1024 * 1024
# A whole .json list is parsed in one piece and held as Python objects (several times its size):
# past this, the list belongs in .jsonl or .parquet, which are read as streams.
MAX_JSON_FILE_CHARS = 1024 * 1024 * 1024

csv.field_size_limit(16 * 1024 * 1024)  # captions can be long; the default 128 KiB limit is not


@dataclass(frozen=True, slots=True)
class UrlRow:
    """One row of a URL list."""

    index: int  # 0-based, data rows only
    url: str
    caption: str | None = None
    label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class UrlHarvestReport(HtmlReport):
    """What one ``harvest urls`` run did."""

    file: str
    format: str
    rows: int = 0
    added: int = 0
    already_present: int = 0
    skipped_not_http: int = 0
    skipped_batches: int = 0
    interrupted: bool = False


def detect_format(path: Path, input_format: str | None = None) -> tuple[str, bool]:
    """``(format, gzipped)`` from the extension (``photos.csv.gz`` -> ``("csv", True)``)."""
    name = path.name.lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[:-3]
    fmt = (input_format or (name.rsplit(".", 1)[-1] if "." in name else "")).lower()
    if fmt not in URL_FORMATS:
        raise ImportSourceError(
            f"cannot tell the format of {path.name}; use one of .{', .'.join(URL_FORMATS)} (optionally .gz) "
            "or pass input_format (--input-format)"
        )
    return fmt, gzipped


def url_source_id(url: str) -> str:
    """The stable photo id of a URL: the same URL is the same photo in every list."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def iter_url_rows(
    path: str | os.PathLike[str],
    *,
    url_col: str = "url",
    caption_col: str | None = None,
    label_col: str | None = None,
    input_format: str | None = None,
) -> Iterator[UrlRow]:
    """Every row of a URL list, in file order. Raises :class:`ImportSourceError` for unusable files."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ImportSourceError(f"{file} is not a file; pass a .txt/.csv/.tsv/.json/.jsonl/.parquet URL list")
    fmt, gzipped = detect_format(file, input_format)
    if fmt == "txt" and (caption_col or label_col):
        raise ImportSourceError(
            "a .txt URL list has no columns; caption_col and label_col need csv, json or parquet"
        )
    if fmt == "parquet":
        records: Iterator[dict[str, Any]] = _parquet_records(file, gzipped)
    elif fmt == "txt":
        records = ({url_col: line} for line in _txt_lines(file, gzipped))
    else:
        records = _text_records(file, fmt, gzipped)
    wanted = {url_col, caption_col, label_col}
    for index, rec in enumerate(records):
        if index == 0 and url_col not in rec:
            raise ImportSourceError(
                f"{file.name} has no column {url_col!r} (columns: {', '.join(map(str, rec))[:300]}); "
                "pass url_col (--url-col NAME)"
            )
        extra = {str(k): _scalar(v) for k, v in list(rec.items())[: MAX_EXTRA_COLUMNS + 3] if k not in wanted}
        yield UrlRow(
            index,
            _text(rec.get(url_col)) or "",
            _text(rec.get(caption_col)) if caption_col else None,
            _text(rec.get(label_col)) if label_col else None,
            {k: v for k, v in list(extra.items())[:MAX_EXTRA_COLUMNS] if v is not None},
        )


def _open_text(file: Path, gzipped: bool) -> IO[str]:
    if gzipped:
        return io.TextIOWrapper(gzip.open(file, "rb"), encoding="utf-8-sig", errors="replace", newline="")
    return open(file, encoding="utf-8-sig", errors="replace", newline="")


def _txt_lines(file: Path, gzipped: bool) -> Iterator[str]:
    with _open_text(file, gzipped) as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def _text_records(file: Path, fmt: str, gzipped: bool) -> Iterator[dict[str, Any]]:
    try:
        with _open_text(file, gzipped) as fh:
            if fmt in ("csv", "tsv"):
                yield from csv.DictReader(fh, delimiter="\t" if fmt == "tsv" else ",")
            elif fmt == "jsonl":
                for number, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            obj = loads_untrusted(line, max_bytes=MAX_JSONL_LINE_CHARS)
                        except UntrustedJSONError as exc:
                            raise ImportSourceError(
                                f"cannot read {file.name} as jsonl: line {number}: {exc}"
                            ) from None
                        if not isinstance(obj, dict):
                            raise ImportSourceError(f"{file.name} line {number} is not a JSON object")
                        yield obj
            else:
                data = loads_untrusted(fh.read(MAX_JSON_FILE_CHARS + 1), max_bytes=MAX_JSON_FILE_CHARS)
                yield from _json_records(data, file)
    except (UntrustedJSONError, csv.Error, UnicodeError, EOFError, gzip.BadGzipFile) as exc:
        raise ImportSourceError(f"cannot read {file.name} as {fmt}: {exc}") from exc


def _json_records(data: Any, file: Path) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for number, obj in enumerate(data):
            if not isinstance(obj, dict):
                raise ImportSourceError(f"{file.name}: item {number} is not an object")
            yield obj
    elif isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise ImportSourceError(f"{file.name}: column lists have different lengths")
        keys = list(data)
        for i in range(lengths.pop()):
            yield {k: data[k][i] for k in keys}
    else:
        raise ImportSourceError(f"{file.name}: expected a list of objects or an object of column lists")


def _parquet_records(file: Path, gzipped: bool) -> Iterator[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if gzipped:
            with gzip.open(file, "rb") as fh:
                source: Any = pa.BufferReader(fh.read())
        else:
            source = str(file)
        parquet = pq.ParquetFile(source)
        for batch in parquet.iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise ImportSourceError(f"cannot read {file.name} as parquet: {exc}") from exc


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text or None


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value[:MAX_EXTRA_TEXT]
    return None  # nested values (lists, embeddings...) stay in the dataset, not the catalog


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host (the fetch stage checks the destination itself)."""
    if not url or len(url) > MAX_URL_LEN:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def url_record(row: UrlRow, list_name: str, default_label: str) -> PhotoRecord:
    """The photo record of one row."""
    extra: dict[str, Any] = {"list": list_name, "row": row.index}
    if row.extra:
        extra["columns"] = row.extra
    return PhotoRecord(
        source=SOURCE,
        source_id=url_source_id(row.url),
        labels=[row.label or default_label],
        caption=row.caption,
        hashtags=extract_hashtags(row.caption),
        urls=[ImageURL(SIZE_KEY, row.url)],
        extra=extra,
    )


def default_label(path: Path) -> str:
    """``laion_part1.parquet.gz`` -> ``laion_part1``."""
    name = path.name
    for suffix in (".gz", *(f".{f}" for f in URL_FORMATS)):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "urls"


def harvest_url_list(
    corpus: Corpus,
    path: str | os.PathLike[str],
    *,
    url_col: str = "url",
    caption_col: str | None = None,
    label_col: str | None = None,
    label: str | None = None,
    input_format: str | None = None,
    batch_size: int = 1000,
    stop: object | None = None,
    advance: Callable[[int], None] | None = None,
) -> UrlHarvestReport:
    """Add every row of a URL list to the corpus as a photo with one URL (size key ``url``)."""
    file = Path(path).expanduser().absolute()
    rows = iter_url_rows(
        file, url_col=url_col, caption_col=caption_col, label_col=label_col, input_format=input_format
    )
    fmt, _ = detect_format(file, input_format)
    report = UrlHarvestReport(file=str(file), format=fmt)
    stat = file.stat()
    signature = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "url_col": url_col}
    query = str(file)
    done = {
        int(p["page"])
        for p in corpus.harvest_pages(SOURCE, query)
        if p.get("state") and json.loads(p["state"]) == signature
    }
    fallback_label = label or default_label(file)
    batch: list[UrlRow] = []
    page = 0

    def flush() -> None:
        nonlocal page
        if page in done:
            report.skipped_batches += 1
        else:
            with corpus.transaction():  # the rows and the log entry that says they are in: together
                _commit_rows(corpus, batch, file.name, fallback_label, report)
                corpus.log_harvest_page(SOURCE, query, page, len(batch), state=signature)
        if advance:
            advance(len(batch))
        page += 1
        batch.clear()

    for row in rows:
        report.rows += 1
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
            if stop:
                report.interrupted = True
                return report
    if batch:
        flush()
    return report


def _commit_rows(
    corpus: Corpus, rows: list[UrlRow], list_name: str, label: str, report: UrlHarvestReport
) -> None:
    records: dict[str, PhotoRecord] = {}
    for row in rows:
        if not is_http_url(row.url):
            report.skipped_not_http += 1
            continue
        rec = url_record(row, list_name, label)
        if rec.source_id in records:  # the same URL twice in one batch: one photo, both labels
            records[rec.source_id].labels.extend(
                lb for lb in rec.labels if lb not in records[rec.source_id].labels
            )
            report.already_present += 1
            continue
        records[rec.source_id] = rec
    with corpus.transaction():
        existing = corpus.photo_ids(SOURCE, list(records))
        corpus.add_photos(list(records.values()))
    report.added += len(records) - len(existing)
    report.already_present += len(existing)
