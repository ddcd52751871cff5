"""The grid's filters against the real test corpus: each one's count equals a plain reference query
written here (joins, no sub-query tricks), and none of them scans the wide photos rows (the indexes
of migration 10 and the id-set form of photocorpus.serve.photo_filters keep 100,000 photos fast)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from photocorpus.serve.photo_filters import SORTS, FilterError, parse_grid_query

REFERENCE = "SELECT COUNT(*) FROM photos p LEFT JOIN curation c ON c.photo_id = p.id WHERE "
CASES = [
    ({"label": "brooklyn"}, "p.primary_label = 'brooklyn'"),
    ({"source": "folder"}, "p.source = 'folder'"),
    ({"split": "train"}, "c.split = 'train'"),
    ({"split": "none"}, "c.split IS NULL"),
    ({"dup": "unique"}, "c.dup_group IS NULL"),
    ({"dup": "duplicate"}, "c.duplicate_of IS NOT NULL"),
    ({"dup": "representative"}, "c.dup_group = p.id"),
    ({"dup": "grouped"}, "c.dup_group IS NOT NULL"),
    ({"bot": "0"}, "COALESCE(c.bot, 0) = 0"),
    ({"excluded": "1"}, "c.exclusion IS NOT NULL"),
    ({"excluded": "0"}, "c.exclusion IS NULL"),
    ({"has_caption": "1"}, "COALESCE(p.caption, '') != ''"),
    ({"has_caption": "0"}, "COALESCE(p.caption, '') = ''"),
    (
        {"stage": "import", "status": "done"},
        "EXISTS (SELECT 1 FROM stages s WHERE s.photo_id = p.id AND s.stage = 'import' "
        "AND s.status = 'done')",
    ),
    (
        {"stage": "fetch", "status": "pending"},
        "NOT EXISTS (SELECT 1 FROM stages s WHERE s.photo_id = p.id AND s.stage = 'fetch' "
        "AND s.status != 'pending')",
    ),
    (
        {"date_from": "2000-01-01", "date_to": "2999-12-31"},
        "COALESCE(p.taken_at, p.uploaded_at) >= '2000-01-01'",
    ),
    ({"date_to": "1999-12-31"}, "COALESCE(p.taken_at, p.uploaded_at) < '2000'"),
    ({"ids": "1,2,3,999999"}, "p.id IN (1, 2, 3)"),
    (
        {"label": "nyc", "dup": "unique", "split": "train"},
        "p.primary_label = 'nyc' AND c.dup_group IS NULL AND c.split = 'train'",
    ),
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Iterator[sqlite3.Connection]:
    from tests.serve_helpers import build_corpus, copy_corpus

    built = build_corpus(tmp_path_factory.mktemp("serve-built"), instany_images)
    root = copy_corpus(built, tmp_path_factory.mktemp("serve-filters") / "corpus")
    # read-only, on its own copy, closed at the module's end: closing the last connection of a WAL
    # catalog removes its -wal/-shm files, which must never happen while another module copies it
    conn = sqlite3.connect(f"file:{root / 'catalog.sqlite'}?mode=ro", uri=True)
    yield conn
    conn.close()


@pytest.mark.parametrize(("filters", "reference"), CASES, ids=[str(c[0]) for c in CASES])
def test_each_filter_counts_what_a_plain_query_counts(
    catalog: sqlite3.Connection, filters: dict, reference: str
) -> None:
    condition, values = parse_grid_query(filters).where()
    got = catalog.execute(f"SELECT COUNT(*) FROM photos p WHERE {condition}", values).fetchone()[0]
    expected = catalog.execute(REFERENCE + reference).fetchone()[0]
    assert got == expected


def test_the_filters_select_something_in_the_test_corpus(catalog: sqlite3.Connection) -> None:
    """Guards the test above from passing on empty sets: most cases match some photos and not all."""
    total = catalog.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
    partial = 0
    for filters, _reference in CASES:
        condition, values = parse_grid_query(filters).where()
        n = catalog.execute(f"SELECT COUNT(*) FROM photos p WHERE {condition}", values).fetchone()[0]
        partial += 0 < n < total
    assert partial >= 12


def test_no_count_reads_the_photos_rows_and_date_sorts_use_the_index(catalog: sqlite3.Connection) -> None:
    """A count reads ids from indexes only (never a scan of the wide rows); the page's rows come in id
    or date order from an index, so a LIMIT stops after one page instead of sorting everything."""
    filters = [case[0] for case in CASES] + [
        {"imagenet": "bridge"}, {"category": "x"}, {"license": "CC BY 2.0"},
        {"reviewed": "1"}, {"reviewed": "0"},
    ]  # fmt: skip
    for f in filters:
        condition, values = parse_grid_query(f).where()
        plan = [
            r[3]
            for r in catalog.execute(
                f"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM photos p WHERE {condition}", values
            )
        ]
        assert not [
            step
            for step in plan
            if step.startswith("SCAN") and "USING" not in step and "json_each" not in step
        ], (f, plan)
    for sort in ("date", "-date", "id"):
        plan = [
            r[3]
            for r in catalog.execute(
                f"EXPLAIN QUERY PLAN SELECT p.id FROM photos p ORDER BY {SORTS[sort]} LIMIT 60"
            )
        ]
        assert not any("TEMP B-TREE" in step for step in plan), (sort, plan)


def test_bad_values_are_refused_with_what_is_accepted() -> None:
    for params, words in (
        ({"dup": "maybe"}, "unique"),
        ({"split": "holdout"}, "train"),
        ({"status": "failed"}, "stage"),
        ({"cluster": "7"}, "RUN:NUMBER"),
        ({"bot": "yes"}, "0 or 1"),
        ({"ids": "1,x"}, "photo ids"),
        ({"page": "0"}, "page"),
        ({"per_page": "100000"}, "per_page"),
    ):
        with pytest.raises(FilterError, match=words):
            parse_grid_query(params)
