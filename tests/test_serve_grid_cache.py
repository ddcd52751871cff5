"""The grid's kept answers (photocorpus.serve.stamped_cache, grid_ids, catalog_stamps) on the real test
corpus: pages equal plain reference queries, a decision made through another connection (as another
server process would) shows on the next page, a decision keeps the answers it cannot change, and one
thread computes a missing answer while the others wait for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from photocorpus import decisions
from photocorpus.corpus import Corpus
from photocorpus.serve.grid_rows import facet_counts, grid_page
from photocorpus.serve.photo_filters import SORTS, parse_grid_query, photo_condition
from photocorpus.serve.stamped_cache import StampedCache


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Path:
    from tests.serve_helpers import build_corpus, copy_corpus

    built = build_corpus(tmp_path_factory.mktemp("serve-built"), instany_images)
    return copy_corpus(built, tmp_path_factory.mktemp("serve-grid-cache") / "corpus")


@pytest.fixture()
def reader(corpus_dir: Path) -> Iterator[Corpus]:
    with Corpus.open(corpus_dir, check=False) as corpus:
        yield corpus


@pytest.fixture()
def writer(corpus_dir: Path) -> Iterator[Corpus]:
    """A second connection: the decisions of another server process."""
    with Corpus.open(corpus_dir, check=False) as corpus:
        yield corpus


def page(corpus: Corpus, cache: StampedCache, **params: str) -> dict:
    return grid_page(corpus, parse_grid_query(params), cache)


def reference_ids(corpus: Corpus, filters: dict[str, str], sort: str) -> list[int]:
    """The ids in page order as one plain query (filters as conditions, the sort as ORDER BY)."""
    condition, values = photo_condition(filters)
    sql = (
        "SELECT p.id FROM photos p LEFT JOIN curation c ON c.photo_id = p.id "
        f"WHERE {condition} ORDER BY {SORTS[sort]}"
    )
    return [int(r[0]) for r in corpus.conn.execute(sql, values)]


@pytest.mark.parametrize("sort", list(SORTS))
@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"label": "nyc"},
        {"dup": "grouped", "excluded": "0"},
        {"dup": "unique", "reviewed": "0", "bot": "0"},
        {"has_caption": "0"},
        {"stage": "dedup", "status": "done"},
    ],
    ids=str,
)
def test_pages_list_what_one_plain_query_lists(reader: Corpus, filters: dict, sort: str) -> None:
    cache = StampedCache()
    expected = reference_ids(reader, filters, sort)
    assert expected, "the test corpus has photos for every case"
    seen: list[int] = []
    for number in (1, 2, 3):
        answer = page(reader, cache, sort=sort, page=str(number), per_page="3", **filters)
        assert answer["count"] == len(expected)
        seen += [p["id"] for p in answer["photos"]]
    assert seen == expected[:9]


def test_a_decision_from_another_connection_shows_on_the_next_page(reader: Corpus, writer: Corpus) -> None:
    cache = StampedCache()
    kept = page(reader, cache, excluded="0", per_page="500")
    target = kept["photos"][0]["id"]
    assert page(reader, cache, excluded="0", per_page="500")["count"] == kept["count"]  # from the cache
    decision = decisions.exclude_photos(writer, [target], reviewer="test")
    after = page(reader, cache, excluded="0", per_page="500")
    assert after["count"] == kept["count"] - 1
    assert target not in [p["id"] for p in after["photos"]]
    assert target in [p["id"] for p in page(reader, cache, excluded="1", per_page="500")["photos"]]
    decisions.undo(writer, decision.id, reviewer="test")
    assert page(reader, cache, excluded="0", per_page="500")["count"] == kept["count"]


def test_a_decision_keeps_the_answers_it_cannot_change(reader: Corpus, writer: Corpus) -> None:
    cache = StampedCache()
    kept = [{"source": "folder"}, {"label": "brooklyn"}, {"dup": "grouped"}, {"flag": "too_dark"}]
    for filters in [*kept, {"excluded": "1"}]:
        page(reader, cache, **filters)
    made = cache.misses
    for filters in [*kept, {"excluded": "1"}]:
        page(reader, cache, **filters)
    assert cache.misses == made, "nothing changed, nothing is made again"

    photo = page(reader, cache, label="nyc")["photos"][0]["id"]
    made = cache.misses
    decisions.add_note(writer, photo, "a note changes no filter but reviewed", reviewer="test")
    exclusion = decisions.exclude_photos(writer, [photo], reviewer="test")
    for filters in kept:
        page(reader, cache, **filters)
    assert cache.misses == made, "an exclusion changes neither the source, the labels, groups nor flags"
    page(reader, cache, excluded="1")
    assert cache.misses == made + 2, "an exclusion changes the excluded term and its page ids"

    made = cache.misses
    brooklyn = page(reader, cache, label="brooklyn")["count"]
    decisions.set_label(writer, [photo], "brooklyn", reviewer="test")
    page(reader, cache, source="folder")
    assert cache.misses == made, "a new label does not change the source filter"
    assert page(reader, cache, label="brooklyn")["count"] == brooklyn + 1
    decisions.undo(writer, exclusion.id, reviewer="test")


def test_one_thread_makes_a_missing_value_while_the_others_wait() -> None:
    cache = StampedCache()
    calls: list[int] = []
    release = threading.Event()
    started = threading.Barrier(8)

    def make() -> str:
        calls.append(1)
        release.wait()
        return "value"

    answers: list[str] = []

    def ask() -> None:
        started.wait()
        answers.append(cache.get("choices", (), make, ttl_s=60))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    while not calls:  # the first asker is making it; the rest ask now or later, never make again
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert answers == ["value"] * 8
    assert len(calls) == 1


def test_a_value_made_under_another_stamp_is_not_served() -> None:
    cache = StampedCache()
    assert cache.get("k", 1, lambda: "old", ttl_s=60) == "old"
    assert cache.get("k", 1, lambda: "new", ttl_s=60) == "old"
    assert cache.get("k", 2, lambda: "new", ttl_s=60) == "new"
    assert cache.get("k", 2, lambda: "newer", ttl_s=0) == "newer", "past its time a value is made again"


def reference_facets(corpus: Corpus, filters: dict[str, str]) -> dict[str, list[tuple[str, int]]]:
    """Each facet as a plain GROUP BY over the photos of the other filters."""
    expressions = {
        "label": "p.primary_label",
        "split": "COALESCE(c.split, 'none')",
        "source": "p.source",
        "dup": "CASE WHEN c.dup_group IS NULL THEN 'unique' WHEN c.dup_group = p.id THEN 'representative' "
        "ELSE 'duplicate' END",
    }
    out = {}
    for name, expression in expressions.items():
        condition, values = photo_condition({k: v for k, v in filters.items() if k != name})
        rows = corpus.conn.execute(
            f"SELECT {expression} AS v, COUNT(*) AS n FROM photos p "
            f"LEFT JOIN curation c ON c.photo_id = p.id WHERE {condition} GROUP BY v ORDER BY n DESC, v",
            values,
        )
        out[name] = [(str(v), int(n)) for v, n in rows]
    return out


@pytest.mark.parametrize("filters", [{}, {"label": "nyc", "split": "train"}, {"dup": "duplicate"}], ids=str)
def test_facet_counts_are_what_a_group_by_counts_and_follow_a_decision(
    reader: Corpus, writer: Corpus, filters: dict[str, str]
) -> None:
    cache = StampedCache()
    query = parse_grid_query(filters)
    assert facet_counts(reader, query, cache) == reference_facets(reader, filters)
    photo = page(reader, cache, dup="duplicate")["photos"][0]["id"]
    representative = reader.conn.execute("SELECT duplicate_of FROM curation WHERE photo_id = ?", (photo,))
    decision = decisions.mark_not_duplicate(writer, photo, int(representative.fetchone()[0]))
    assert facet_counts(reader, query, cache) == reference_facets(reader, filters)
    label = decisions.set_label(writer, [photo], "brooklyn", reviewer="test")
    assert facet_counts(reader, query, cache) == reference_facets(reader, filters)
    decisions.undo(writer, label.id, reviewer="test")
    decisions.undo(writer, decision.id, reviewer="test")
    assert facet_counts(reader, query, cache) == reference_facets(reader, filters)
