"""Splits: balanced per label, stable under growth, one split per duplicate group, exclusions honoured.

The catalog rows are real (a real corpus, real SQL); the images are not needed to test split logic, so
the files rows point at paths that are never read, and the dedup/quality results are written the way
those stages write them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from photocorpus.config import CurateSettings
from photocorpus.corpus import Corpus, StoredFile
from photocorpus.curate.splits import run_splits
from photocorpus.records import PhotoRecord

TARGET = {"train": 0.80, "val": 0.05, "test": 0.15}


def _add(corpus: Corpus, label: str, start: int, n: int, rng: np.random.Generator) -> list[int]:
    ids = corpus.add_photos([PhotoRecord("test", f"{label}-{start + i}", [label]) for i in range(n)])
    with corpus.transaction() as conn:
        conn.executemany(
            "INSERT INTO files (photo_id, path, sha256, width, height, bytes, format, stored_at) "
            "VALUES (?, ?, ?, 300, 300, 1000, 'JPEG', 'now')",
            [(pid, f"images/{label}/{pid}.jpg", f"sha{pid}") for pid in ids],
        )
        conn.executemany(
            "INSERT INTO curation (photo_id, phash, hashed_sha256, updated_at) VALUES (?, ?, ?, 'now')",
            [(pid, int(rng.integers(-(2**62), 2**62)), f"sha{pid}") for pid in ids],
        )
    return ids


def _make_groups(
    corpus: Corpus, ids: list[int], rng: np.random.Generator, groups: int
) -> dict[int, list[int]]:
    """Duplicate groups of 2-4 photos among ``ids``, the first member representing, as dedup writes."""
    chosen = rng.choice(ids, size=groups * 4, replace=False).reshape(groups, 4)
    out = {}
    with corpus.transaction() as conn:
        for row in chosen:
            members = [int(x) for x in row[: int(rng.integers(2, 5))]]
            rep = members[0]
            out[rep] = members
            for m in members:
                conn.execute(
                    "UPDATE curation SET dup_group = ?, duplicate_of = ? WHERE photo_id = ?",
                    (rep, None if m == rep else rep, m),
                )
    return out


def _splits(corpus: Corpus) -> dict[int, tuple[str | None, str | None, str | None]]:
    return {
        int(r[0]): (r[1], r[2], r[3])
        for r in corpus.conn.execute("SELECT photo_id, split, split_assigned, exclusion FROM curation")
    }


def _check_balance(corpus: Corpus, min_photos: int = 1000) -> int:
    checked = 0
    for (label,) in corpus.conn.execute("SELECT DISTINCT primary_label FROM photos"):
        counts = dict(
            corpus.conn.execute(
                "SELECT c.split, COUNT(*) FROM curation c JOIN photos p ON p.id = c.photo_id "
                "WHERE p.primary_label = ? AND c.split IS NOT NULL GROUP BY c.split",
                (label,),
            ).fetchall()
        )
        total = sum(counts.values())
        if total < min_photos:
            continue
        checked += 1
        for split, share in TARGET.items():
            assert abs(counts.get(split, 0) / total - share) <= 0.01, (label, counts)
    return checked


def test_balanced_stable_and_leak_free(tmp_path: Path) -> None:
    rng = np.random.default_rng(42)
    with Corpus.create(tmp_path / "c") as corpus:
        london = _add(corpus, "london", 0, 1500, rng)
        nyc = _add(corpus, "nyc", 0, 1200, rng)
        _add(corpus, "tiny", 0, 37, rng)
        groups = _make_groups(corpus, london + nyc, rng, 120)
        report = run_splits(corpus)
        assert _check_balance(corpus) == 2
        assert set(report.per_label) == {"london", "nyc", "tiny"}
        before = _splits(corpus)
        # duplicates are out of the splits but carry their group's split; one split per group
        for rep, members in groups.items():
            assert before[rep][0] is not None
            for m in members[1:]:
                assert before[m][0] is None and before[m][2] == "duplicate"
                assert before[m][1] == before[rep][0]

        # 10% more photos, some of them new duplicates of old representatives: nothing old moves
        more = _add(corpus, "london", 1500, 150, rng) + _add(corpus, "nyc", 1200, 120, rng)
        old_rep = next(iter(groups))
        with corpus.transaction() as conn:
            conn.execute(
                "UPDATE curation SET dup_group = ?, duplicate_of = ? WHERE photo_id = ?",
                (old_rep, old_rep, more[0]),
            )
        report = run_splits(corpus)
        after = _splits(corpus)
        changed = [pid for pid, s in before.items() if s[1] is not None and after[pid][1] != s[1]]
        assert changed == []
        assert report.newly_assigned == 150 + 120 - 1  # more[0] is a duplicate
        assert _check_balance(corpus) == 2
        assert after[more[0]][0] is None and after[more[0]][1] == before[old_rep][0]

        # a bigger copy arrives and becomes the representative: the group keeps its split
        newcomer = _add(corpus, "nyc", 5000, 1, rng)[0]
        members = groups[old_rep] + [more[0]]
        with corpus.transaction() as conn:
            for m in [*members, newcomer]:
                conn.execute(
                    "UPDATE curation SET dup_group = ?, duplicate_of = ? WHERE photo_id = ?",
                    (newcomer, None if m == newcomer else newcomer, m),
                )
        run_splits(corpus)
        final = _splits(corpus)
        assert final[newcomer][0] == before[old_rep][0]
        assert final[old_rep][0] is None and final[old_rep][2] == "duplicate"
        # no group ever has members in two different splits
        for (group,) in corpus.conn.execute(
            "SELECT DISTINCT dup_group FROM curation WHERE dup_group IS NOT NULL"
        ):
            assigned = {
                r[0]
                for r in corpus.conn.execute(
                    "SELECT split_assigned FROM curation WHERE dup_group = ?", (group,)
                )
            }
            assert len(assigned) == 1


def test_exclusions_bots_quality_language_and_missing_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    with Corpus.create(tmp_path / "c") as corpus:
        ids = _add(corpus, "nyc", 0, 40, rng)
        unhashed = corpus.add_photos([PhotoRecord("test", "no-hash", ["nyc"])])[0]
        corpus.commit_file(unhashed, StoredFile("images/nyc/nohash.jpg", "shaX", 300, 300, 1000, "JPEG"))
        nofile = corpus.add_photos([PhotoRecord("test", "no-file", ["nyc"])])[0]
        with corpus.transaction() as conn:
            conn.execute(
                "UPDATE curation SET bot = 1, bot_reason = 'repeated_caption' WHERE photo_id = ?", (ids[0],)
            )
            conn.execute(
                "UPDATE curation SET quality_flags = ? WHERE photo_id = ?",
                (json.dumps(["near_uniform"]), ids[1]),
            )
            conn.execute(
                "UPDATE curation SET quality_flags = ? WHERE photo_id = ?", (json.dumps(["blurry"]), ids[2])
            )
            conn.executemany(
                "UPDATE curation SET language = ? WHERE photo_id = ?",
                [("en" if i % 2 else "fr", pid) for i, pid in enumerate(ids)],
            )
        run_splits(corpus)
        s = _splits(corpus)
        assert s[ids[0]][2] == "bot" and s[ids[1]][2] == "quality:near_uniform"
        assert s[ids[2]][0] is not None  # blurry is flagged, but not a drop flag by default
        assert s[unhashed][2] == "not_deduplicated" and s[nofile][2] == "no_file"
        run_splits(corpus, CurateSettings(exclude_bots=False), languages=["en"])
        s2 = _splits(corpus)
        assert s2[ids[0]][2] == "language"  # ids[0] is "fr"; no longer excluded as a bot
        assert all(s2[pid][2] == "language" for i, pid in enumerate(ids) if i % 2 == 0)
        assert all(s2[pid][0] == s[pid][0] for i, pid in enumerate(ids) if i % 2 and i > 2)


def test_positions_depend_on_the_photo_not_the_catalog(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    positions = []
    for name, order in (("a", range(50)), ("b", reversed(range(50)))):
        with Corpus.create(tmp_path / name) as corpus:
            for i in order:
                _add(corpus, "nyc", i, 1, rng)
            run_splits(corpus)
            positions.append(
                dict(
                    corpus.conn.execute(
                        "SELECT p.source_id, c.split_position FROM photos p "
                        "JOIN curation c ON c.photo_id = p.id"
                    ).fetchall()
                )
            )
    assert positions[0] == positions[1]
    values = sorted(positions[0].values())
    assert values[0] >= 0 and values[-1] < 1 and len(set(values)) == 50
