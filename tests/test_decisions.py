"""Human decisions (issue #22): stored with their effect in one transaction, and kept by every later stage.

A real corpus of real InstaNY100K JPEGs (two re-encoded reposts of one photo make a duplicate group),
curated for real once per module and copied for each test; the stages are re-run the way a user
re-runs them (``pc.curate_photos``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import photocorpus as pc
from photocorpus import decision_effects, decisions
from photocorpus.corpus import Corpus
from photocorpus.curate.grouping import constrained_groups
from photocorpus.curate.variants import make_variant
from photocorpus.errors import CorpusBusyError, DecisionError
from photocorpus.learn.dataset import photo_meta
from photocorpus.records import PhotoRecord
from tests.conftest import run_cli

SPAM = "follow me for more daily photos of the city"


@pytest.fixture(scope="module")
def curated_template(tmp_path_factory: pytest.TempPathFactory, instany_images: Path) -> Path:
    """nyc/: photo a with two re-encoded reposts (a1, a2), and seven unrelated photos b..h; curated."""
    root = tmp_path_factory.mktemp("decisions")
    src = root / "src" / "nyc"
    src.mkdir(parents=True)
    originals = sorted(instany_images.glob("*.jpg"))[40:48]
    for name, path in zip("abcdefgh", originals, strict=True):
        (src / f"{name}.jpg").write_bytes(path.read_bytes())
    data = originals[0].read_bytes()
    for i in (1, 2):
        (src / f"a{i}.jpg").write_bytes(make_variant(data, "reencode", i, i))
    with Corpus.create(root / "corpus") as corpus:
        pc.import_folder(corpus, root / "src", workers=1)
        pc.curate_photos(corpus, workers=1, semantic=False)
    return root


@pytest.fixture
def corpus(curated_template: Path, tmp_path: Path):
    shutil.copytree(curated_template / "corpus", tmp_path / "corpus")
    shutil.copytree(curated_template / "src", tmp_path / "src")
    with Corpus.open(tmp_path / "corpus") as opened:
        yield opened


def ids(corpus: Corpus) -> dict[str, int]:
    return {Path(sid).name: pid for sid, pid in corpus.conn.execute("SELECT source_id, id FROM photos")}


def group(corpus: Corpus, photo_id: int) -> int | None:
    return corpus.conn.execute("SELECT dup_group FROM curation WHERE photo_id = ?", (photo_id,)).fetchone()[0]


def curation(corpus: Corpus, photo_id: int) -> sqlite3.Row:
    return corpus.conn.execute("SELECT * FROM curation WHERE photo_id = ?", (photo_id,)).fetchone()


def test_the_template_has_one_duplicate_group(corpus: Corpus) -> None:
    p = ids(corpus)
    assert group(corpus, p["a"]) is not None
    assert group(corpus, p["a"]) == group(corpus, p["a1"]) == group(corpus, p["a2"])
    assert all(group(corpus, p[name]) is None for name in "bcdefgh")


def test_a_split_stays_split_after_curate_even_when_a_third_photo_links_both_parts(corpus: Corpus) -> None:
    p = ids(corpus)
    # a1 is in neither part: it links to a and to a2, so only a constrained union keeps them apart
    decision = pc.split_group(corpus, [p["a"]], [p["a2"]], reviewer="ann")
    assert decision.kind == "split_group" and decision.reviewer == "ann"
    assert group(corpus, p["a2"]) is None  # applied now: a singleton leaves the group
    assert curation(corpus, p["a2"])["exclusion"] is None
    report = pc.curate_photos(corpus, workers=1, semantic=False)
    groups = {x: group(corpus, p[x]) for x in ("a", "a1", "a2")}
    assert groups["a1"] is not None and groups["a1"] in (groups["a"], groups["a2"])  # on one side
    assert groups["a"] != groups["a2"] or groups["a"] is None
    assert report.dedup is not None and report.dedup.refused >= 1
    # a pair marked different inside the group that is left: no two of the three are linked now
    pc.mark_not_duplicate(corpus, p["a1"], p["a2"])
    pc.mark_not_duplicate(corpus, p["a"], p["a1"])
    pc.curate_photos(corpus, workers=1, semantic=False)
    assert [group(corpus, p[x]) for x in ("a", "a1", "a2")] == [None, None, None]


def test_a_confirmed_group_stays_linked_where_no_threshold_links_it(corpus: Corpus) -> None:
    p = ids(corpus)
    pc.confirm_group(corpus, [p["b"], p["c"]])
    assert group(corpus, p["b"]) == group(corpus, p["c"]) is not None  # applied now
    pc.curate_photos(corpus, workers=1, semantic=False, phash_max_distance=0, dhash_max_distance=0)
    assert group(corpus, p["b"]) == group(corpus, p["c"]) is not None
    methods = {curation(corpus, p[x])["dup_method"] for x in "bc"}
    assert methods == {"human"}
    dups = [x for x in "bc" if curation(corpus, p[x])["duplicate_of"] is not None]
    assert len(dups) == 1 and curation(corpus, p[dups[0]])["exclusion"] == "duplicate"


def test_an_excluded_photo_is_never_in_a_split_after_curate(corpus: Corpus) -> None:
    p = ids(corpus)
    assert curation(corpus, p["d"])["split"] is not None
    pc.exclude_photos(corpus, [p["d"]], reason="a screenshot")
    assert (curation(corpus, p["d"])["split"], curation(corpus, p["d"])["exclusion"]) == (None, "human")
    pc.curate_photos(corpus, workers=1, semantic=False)
    assert (curation(corpus, p["d"])["split"], curation(corpus, p["d"])["exclusion"]) == (None, "human")
    assert corpus.photos(split=["train", "val", "test"])["photo_id"].tolist().count(p["d"]) == 0


def _spam(corpus: Corpus, names: str) -> None:
    """The same long caption on these photos, as the caption step writes it: the bot rule's input."""
    p = ids(corpus)
    with corpus.transaction() as conn:
        conn.executemany(
            "UPDATE curation SET caption_clean = ? WHERE photo_id = ?", [(SPAM, p[x]) for x in names]
        )


def test_include_lifts_a_bot_exclusion_and_bot_verdicts_survive_the_bot_step(corpus: Corpus) -> None:
    p = ids(corpus)
    _spam(corpus, "def")
    steps = ["bots", "split"]
    pc.curate_photos(corpus, steps=steps, bot_caption_repeats=3)
    assert {curation(corpus, p[x])["exclusion"] for x in "def"} == {"bot"}

    pc.include_photos(corpus, [p["d"]])
    pc.set_bot(corpus, [p["e"]], False)
    pc.set_bot(corpus, [p["g"]], True)
    report = pc.curate_photos(corpus, steps=steps, bot_caption_repeats=3)
    d, e, f, g = (curation(corpus, p[x]) for x in "defg")
    assert d["bot"] == 1 and d["exclusion"] is None and d["split"] is not None  # included despite it
    assert e["bot"] == 0 and e["exclusion"] is None and e["split"] is not None  # "not a bot" holds
    assert f["bot"] == 1 and f["exclusion"] == "bot"
    assert (g["bot"], g["bot_reason"], g["exclusion"]) == (1, "human", "bot")
    assert report.bots is not None and report.bots.overruled == 1


def test_a_quality_verdict_overrides_the_drop_flags(corpus: Corpus) -> None:
    p = ids(corpus)
    with corpus.transaction() as conn:
        conn.execute("UPDATE curation SET quality_flags = '[\"blurry\"]' WHERE photo_id = ?", (p["b"],))
    pc.curate_photos(corpus, steps=["split"], drop_flags=["blurry"])
    assert curation(corpus, p["b"])["exclusion"] == "quality:blurry"
    pc.set_quality(corpus, [p["b"]], True)
    pc.set_quality(corpus, [p["c"]], False)
    assert curation(corpus, p["c"])["exclusion"] == "quality:human"
    pc.curate_photos(corpus, steps=["split"], drop_flags=["blurry"])
    assert curation(corpus, p["b"])["exclusion"] is None and curation(corpus, p["b"])["split"] is not None
    assert (curation(corpus, p["c"])["split"], curation(corpus, p["c"])["exclusion"]) == (
        None,
        "quality:human",
    )


def test_a_corrected_label_reaches_exports_and_photos_and_survives_a_reimport(
    corpus: Corpus, tmp_path: Path
) -> None:
    p = ids(corpus)
    path_before = corpus.photo(p["b"])["file"]["path"]
    pc.set_label(corpus, [p["b"]], "london")
    frame = corpus.photos().set_index("photo_id")
    assert frame.loc[p["b"], "label"] == "london" and list(frame.loc[p["b"], "labels"]) == ["london"]
    assert frame.loc[p["c"], "label"] == "nyc"
    assert corpus.photo(p["b"])["file"]["path"] == path_before  # the image does not move
    assert corpus.photos(label="london")["photo_id"].tolist() == [p["b"]]
    assert photo_meta(corpus, [p["b"], p["c"]]).labels == ["london", "nyc"]  # what training reads

    pc.import_folder(corpus, tmp_path / "src", workers=1)  # the same photos again, labelled nyc
    source, source_id = corpus.conn.execute(
        "SELECT source, source_id FROM photos WHERE id = ?", (p["b"],)
    ).fetchone()
    assert corpus.add_photos([PhotoRecord(source, source_id, ["nyc", "newyork"])]) == [p["b"]]  # re-harvested
    assert corpus.photo(p["b"])["labels"] == ["london"]
    assert corpus.photo(p["c"])["labels"] == ["nyc"]
    report = pc.curate_photos(corpus, workers=1, semantic=False)
    assert report.split is not None and "london" in report.split.per_label

    pc.export_photos(corpus, "parquet", tmp_path / "photos.parquet")
    rows = pq.read_table(tmp_path / "photos.parquet").to_pylist()
    labels = {r["photo_id"]: r["label"] for r in rows}
    assert labels[p["b"]] == "london" and labels[p["c"]] == "nyc"
    pc.export_photos(corpus, "imagefolder", tmp_path / "folders")
    exported = {f.parent.name for f in (tmp_path / "folders").rglob("*.jpg")}
    assert "london" in exported


def test_undo_restores_the_group_and_the_label_and_refuses_a_second_undo(corpus: Corpus) -> None:
    p = ids(corpus)
    rep = curation(corpus, p["a"])["dup_group"]
    split = pc.split_group(corpus, [p["a"], p["a1"]], [p["a2"]])
    undone = pc.undo_decision(corpus, split.id, reviewer="bob")
    assert undone.kind == "undo" and undone.undoes == split.id
    assert group(corpus, p["a2"]) == rep  # restored now
    assert decisions.overrides(corpus).different_pairs == set()
    pc.curate_photos(corpus, workers=1, semantic=False)
    assert group(corpus, p["a2"]) == rep

    first = pc.set_label(corpus, [p["c"]], "london")
    last = pc.set_label(corpus, [p["c"]], "paris")
    pc.undo_decision(corpus, first.id)  # a later decision owns the label: it stays
    assert corpus.photo(p["c"])["primary_label"] == "paris"
    pc.undo_decision(corpus, last.id)  # both undone: the original label is back
    assert corpus.photo(p["c"])["primary_label"] == "nyc" and corpus.photo(p["c"])["labels"] == ["nyc"]

    with pytest.raises(DecisionError, match="already undone"):
        pc.undo_decision(corpus, split.id)
    with pytest.raises(DecisionError, match="no decision #999"):
        pc.undo_decision(corpus, 999)
    history = pc.decision_history(corpus, p["a2"])
    assert [d.kind for d in history] == ["undo", "split_group"] and history[1].undone_by == history[0].id


def test_undo_of_an_exclusion_puts_the_photo_back_in_its_split(corpus: Corpus) -> None:
    p = ids(corpus)
    split = curation(corpus, p["e"])["split"]
    decision = pc.exclude_photos(corpus, [p["e"]])
    pc.undo_decision(corpus, decision.id)
    assert (curation(corpus, p["e"])["split"], curation(corpus, p["e"])["exclusion"]) == (split, None)
    pc.curate_photos(corpus, steps=["split"])
    assert curation(corpus, p["e"])["split"] == split


def test_a_request_id_makes_a_retry_return_the_first_decision(corpus: Corpus) -> None:
    p = ids(corpus)
    first = pc.exclude_photos(corpus, [p["f"]], request_id="click-1")
    again = pc.exclude_photos(corpus, [p["f"]], request_id="click-1")
    assert again == first
    assert corpus.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 1
    with pytest.raises(DecisionError, match="already used"):
        pc.include_photos(corpus, [p["f"]], request_id="click-1")


def test_the_audit_row_and_the_effect_commit_together(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = ids(corpus)
    real = decision_effects.relabel

    def relabel_then_fail(*args: object) -> None:
        real(*args)  # the label is written ...
        raise OSError("killed after the effect")  # ... and the process dies before the commit

    monkeypatch.setattr(decision_effects, "relabel", relabel_then_fail)
    with pytest.raises(OSError):
        pc.set_label(corpus, [p["b"]], "london")
    assert corpus.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    assert corpus.conn.execute("SELECT COUNT(*) FROM photo_verdicts").fetchone()[0] == 0
    assert corpus.photo(p["b"])["primary_label"] == "nyc"


def test_a_busy_catalog_says_retry_and_records_nothing(corpus: Corpus) -> None:
    p = ids(corpus)
    other = sqlite3.connect(corpus.root / "catalog.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    corpus.conn.execute("PRAGMA busy_timeout = 50")
    try:
        with pytest.raises(CorpusBusyError, match="retry"):
            pc.exclude_photos(corpus, [p["b"]], request_id="r")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert corpus.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0


def test_bad_requests_are_refused_with_what_to_send(corpus: Corpus) -> None:
    p = ids(corpus)
    cases = [
        (lambda: pc.confirm_group(corpus, []), "empty"),
        (lambda: pc.exclude_photos(corpus, [p["b"], 10**9]), "no photo with id 1000000000"),
        (lambda: pc.split_group(corpus, [p["a"]], [p["a"]]), "in both keep_ids and split_off_ids"),
        (lambda: pc.split_group(corpus, [p["a"]], [p["b"]]), "not all in one group"),
        (lambda: pc.set_label(corpus, [p["b"]], "new\x1b[2Jyork"), "control characters"),
        (lambda: pc.set_label(corpus, [p["b"]], "  "), "label is empty"),
        (lambda: pc.add_note(corpus, p["b"], "fine", reviewer="x" * 101), "at most 100"),
        (lambda: pc.mark_not_duplicate(corpus, p["b"], p["b"]), "two different photo ids"),
    ]
    for call, message in cases:
        with pytest.raises(DecisionError, match=message):
            call()
    assert corpus.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0


def test_notes_and_the_audit_table_page_in_order(corpus: Corpus) -> None:
    p = ids(corpus)
    made = [pc.add_note(corpus, p["b"], f"note {i}\nsecond line", reviewer="ann") for i in range(3)]
    assert [d.value["text"] for d in made] == [f"note {i}\nsecond line" for i in range(3)]
    page = pc.decision_history(corpus, after_id=made[0].id, limit=1)
    assert [d.id for d in page] == [made[1].id]
    assert [d.id for d in pc.decision_history(corpus, p["b"])] == [d.id for d in reversed(made)]


def test_constrained_groups_cut_only_through_the_weaker_link() -> None:
    # 0-1 strong, 1-2 weak, 3-4 unrelated; a person: 0 and 2 differ
    links = [(np.array([0]), np.array([1])), (np.array([1, 3]), np.array([2, 4]))]
    labels = constrained_groups(5, links, (np.array([0]), np.array([2])))
    assert labels[0] == labels[1] != labels[2]
    assert labels[3] == labels[4] and labels[3] not in (labels[0], labels[2])


def test_the_cli_lists_decisions_and_undoes_one_once(corpus: Corpus) -> None:
    p = ids(corpus)
    made = pc.set_label(corpus, [p["b"]], "london", reviewer="ann")
    root = str(corpus.root)
    listed = [json.loads(line) for line in run_cli("decisions", "-C", root, "--json").stdout.splitlines()]
    assert [(d["id"], d["kind"], d["value"], d["reviewer"]) for d in listed] == [
        (made.id, "set_label", {"label": "london"}, "ann")
    ]
    assert run_cli("undo", str(made.id), "-C", root).returncode == 0
    assert corpus.photo(p["b"])["primary_label"] == "nyc"
    again = run_cli("undo", str(made.id), "-C", root, check=False)
    assert again.returncode == 2 and "already undone" in again.stderr


def test_decisions_made_while_dedup_and_splits_run_are_kept(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person works in the web app while `curate` runs: each stage read the verdicts at its start,
    then a decision lands; the stage's write must not undo it."""
    from photocorpus.curate import dedup, splits

    p = ids(corpus)

    def stale_then(decide):  # the verdicts as the stage first reads them, then the person decides
        calls: list[int] = []

        def read(c: Corpus) -> decisions.HumanOverrides:
            got = decisions.overrides(c)
            if not calls:
                calls.append(1)
                decide()
            return got

        return read

    monkeypatch.setattr(
        dedup, "overrides", stale_then(lambda: pc.split_group(corpus, [p["a"], p["a1"]], [p["a2"]]))
    )
    monkeypatch.setattr(splits, "overrides", stale_then(lambda: pc.exclude_photos(corpus, [p["d"]])))
    pc.curate_photos(corpus, steps=["dedup", "split"], workers=1, semantic=False)
    assert group(corpus, p["a2"]) is None and group(corpus, p["a"]) == group(corpus, p["a1"]) is not None
    assert (curation(corpus, p["d"])["split"], curation(corpus, p["d"])["exclusion"]) == (None, "human")
