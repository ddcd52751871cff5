"""``harvest urls``: URL lists in img2dataset's formats become photos to fetch."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photocorpus.corpus import Corpus
from photocorpus.errors import ImportSourceError
from photocorpus.sources.urls import harvest_url_list, iter_url_rows, url_source_id
from tests.conftest import run_cli

ROWS = [
    {"url": "https://img.example.com/a.jpg", "caption": "Sunset #nyc #Sky", "label": "sunset", "score": 0.31},
    {
        "url": "https://img.example.com/b.jpg",
        "caption": 'a cat, "quoted"\tand tabbed',
        "label": "",
        "score": 0.2,
    },
    {"url": "http://img.example.com/c.png?x=1&y=2", "caption": "", "label": "street", "score": None},
]


def _write(path: Path, fmt: str, rows: list[dict]) -> Path:
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    if fmt == "txt":
        text = "# a comment\n\n" + "".join(f"{r['url']}\n" for r in rows)
    elif fmt in ("csv", "tsv"):
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    elif fmt == "json":
        text = json.dumps(rows)
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["txt", "csv", "tsv", "json", "jsonl", "parquet"])
@pytest.mark.parametrize("gz", [False, True])
def test_every_format_reads_the_same_rows(tmp_path: Path, fmt: str, gz: bool) -> None:
    path = _write(tmp_path / f"list.{fmt}", fmt, ROWS)
    if gz:
        gz_path = path.with_name(path.name + ".gz")
        gz_path.write_bytes(gzip.compress(path.read_bytes()))
        path = gz_path
    columns = {} if fmt == "txt" else {"caption_col": "caption", "label_col": "label"}
    rows = list(iter_url_rows(path, **columns))
    assert [r.url for r in rows] == [r["url"] for r in ROWS]
    if fmt != "txt":
        assert rows[1].caption == 'a cat, "quoted"\tand tabbed'
        assert rows[0].label == "sunset" and rows[1].label is None and rows[2].label == "street"
        if fmt in ("json", "jsonl", "parquet"):
            assert rows[0].extra == {"score": 0.31}


def test_json_columnar_layout(tmp_path: Path) -> None:
    path = tmp_path / "cols.json"
    path.write_text(
        json.dumps({"URL": ["https://x.example/1.jpg", "https://x.example/2.jpg"], "TEXT": ["a", "b"]})
    )
    rows = list(iter_url_rows(path, url_col="URL", caption_col="TEXT"))
    assert [(r.url, r.caption) for r in rows] == [
        ("https://x.example/1.jpg", "a"),
        ("https://x.example/2.jpg", "b"),
    ]


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImportSourceError, match="no column 'link'"):
        list(iter_url_rows(_write(tmp_path / "l.csv", "csv", ROWS), url_col="link"))
    with pytest.raises(ImportSourceError, match="cannot tell the format"):
        list(iter_url_rows(_write(tmp_path / "l.xlsx", "txt", ROWS)))
    with pytest.raises(ImportSourceError, match="has no columns"):
        list(iter_url_rows(_write(tmp_path / "l.txt", "txt", ROWS), caption_col="caption"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"url": "https://a.example/x.jpg"}\n{not json\n')
    with pytest.raises(ImportSourceError, match=r"cannot read bad\.jsonl"):
        list(iter_url_rows(bad))
    with pytest.raises(ImportSourceError, match="is not a file"):
        list(iter_url_rows(tmp_path / "missing.csv"))


def test_harvest_adds_photos_with_one_url_each(tmp_path: Path) -> None:
    rows = [*ROWS, {"url": "ftp://img.example.com/d.jpg", "caption": "", "label": "x", "score": 1.0}]
    rows.append(dict(ROWS[0], label="beach"))  # the same URL again: one photo, both labels
    path = _write(tmp_path / "pairs.jsonl", "jsonl", rows)
    corpus = Corpus.create(tmp_path / "c")
    report = harvest_url_list(corpus, path, caption_col="caption", label_col="label", label="default")
    assert (report.rows, report.added, report.skipped_not_http) == (5, 3, 1)
    assert corpus.count_photos() == 3
    ids = corpus.photo_ids("urls", [url_source_id(r["url"]) for r in ROWS])
    first = corpus.photo(ids[url_source_id(ROWS[0]["url"])])
    assert first["labels"] == ["beach", "sunset"] and first["hashtags"] == ["nyc", "sky"]
    assert [(u["size_key"], u["url"]) for u in first["urls"]] == [("url", ROWS[0]["url"])]
    assert first["extra"]["columns"] == {"score": 0.31} and first["extra"]["list"] == "pairs.jsonl"
    second = corpus.photo(ids[url_source_id(ROWS[1]["url"])])
    assert second["labels"] == ["default"]  # empty label cell: the --label default


def test_rerun_skips_logged_batches_and_adds_nothing(tmp_path: Path) -> None:
    rows = [{"url": f"https://img.example.com/{i}.jpg"} for i in range(2500)]
    path = _write(tmp_path / "many.parquet", "parquet", rows)
    corpus = Corpus.create(tmp_path / "c")
    first = harvest_url_list(corpus, path, batch_size=1000)
    assert (first.added, first.skipped_batches) == (2500, 0)
    again = harvest_url_list(corpus, path, batch_size=1000)
    assert (again.added, again.skipped_batches, corpus.count_photos()) == (0, 3, 2500)
    # a changed file is read again (its rows merge into the existing photos)
    _write(path, "parquet", [*rows, {"url": "https://img.example.com/new.jpg"}])
    changed = harvest_url_list(corpus, path, batch_size=1000)
    assert (changed.added, changed.already_present, changed.skipped_batches) == (1, 2500, 0)


def test_harvest_urls_cli(tmp_path: Path) -> None:
    path = _write(tmp_path / "dataset.csv", "csv", ROWS)
    run_cli("init", str(tmp_path / "c"))
    out = run_cli("harvest", "urls", str(path), "-C", str(tmp_path / "c"), "--caption-col", "caption", "-q")
    assert "3 rows, 3 new photos" in out.stdout
    status = json.loads(run_cli("status", "--json", "-C", str(tmp_path / "c")).stdout)
    assert status["photos"] == 3 and status["sources"] == {"urls": 3}
    assert status["labels"] == {"dataset": 3}  # default label: the file name
    bad = run_cli("harvest", "urls", str(path), "-C", str(tmp_path / "c"), "--url-col", "nope", check=False)
    assert bad.returncode == 2 and "no column 'nope'" in bad.stderr and "Traceback" not in bad.stderr
